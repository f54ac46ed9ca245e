"""The realtime listener at start-up: subscribed before the app serves when Redis is up,
never holding the start up when Redis refuses the connection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import ClientFactory


def _events(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


async def test_a_refused_redis_does_not_hold_the_start_up_for_its_reconnects(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1 refuses at once: waiting for the listener's retries (0.5, 1, 2 s ...) would
    # change nothing but the start-up time.
    async with make_client(redis_url="redis://127.0.0.1:1/0", ratelimit_enabled=False) as client:
        started = _events(capsys.readouterr().out)
        assert (await client.get("/healthz")).status_code == 200
    names = [event["event"] for event in started]
    assert "app.started" in names
    before_start = names[: names.index("app.started")]
    assert before_start.count("realtime.listener_lost") == 1, before_start
    assert "realtime.listening" not in names
