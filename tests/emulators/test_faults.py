"""The shared fault API of the provider emulators (tests/emulators/faults.py)."""

from __future__ import annotations

import httpx
import pytest
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tests.emulators.faults import Faults, Kind


def test_a_fault_hits_its_method_and_whole_path_the_given_number_of_times() -> None:
    faults = Faults()
    faults.add("post", r"/v1/orders/\w+", "error", times=2)
    assert faults.take("GET", "/v1/orders/abc") is None
    assert faults.take("POST", "/v1/orders") is None
    assert faults.take("POST", "/v1/orders/abc/payments") is None
    assert faults.take("POST", "/v1/orders/abc") is not None
    assert faults.take("POST", "/v1/orders/xyz") is not None
    assert faults.take("POST", "/v1/orders/abc") is None


def test_a_fault_without_a_count_hits_every_request_until_cleared() -> None:
    faults = Faults()
    fault = faults.add("*", "/refund", "timeout", times=None)
    for method in ("GET", "POST", "POST"):
        assert faults.take(method, "/refund") is fault
    assert fault.hits == 3
    faults.clear()
    assert faults.take("POST", "/refund") is None


def test_faults_apply_in_the_order_they_were_added() -> None:
    faults = Faults()
    first = faults.add("POST", "/a", "timeout")
    second = faults.add("POST", "/a", "error")
    assert [faults.take("POST", "/a"), faults.take("POST", "/a")] == [first, second]


@pytest.mark.parametrize("times", [0, -1])
def test_a_count_below_one_is_refused(times: int) -> None:
    with pytest.raises(ValueError, match="times"):
        Faults().add("POST", "/a", "timeout", times=times)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        Faults().add("POST", "/a", "explode")  # type: ignore[arg-type]


class Counter:
    """An ASGI app that counts the requests it acted on."""

    def __init__(self) -> None:
        self.acted = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.acted += 1
        await JSONResponse({"ok": True})(scope, receive, send)


def _error(status: int) -> Response:
    return JSONResponse({"provider": "error"}, status_code=status)


@pytest.mark.parametrize(
    ("kind", "raised", "acted"),
    [
        ("timeout", httpx.ReadTimeout, 0),
        ("timeout_after", httpx.ReadTimeout, 1),
        ("unreachable", httpx.ConnectError, 0),
    ],
)
async def test_served_faults_raise_before_or_after_the_provider_acts(
    kind: Kind, raised: type[Exception], acted: int
) -> None:
    faults, app = Faults(), Counter()
    faults.add("POST", "/a", kind)

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        await faults.serve(app, scope, receive, send, error=_error)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=served), base_url="https://emulator.test"
    ) as client:
        with pytest.raises(raised):
            await client.post("/a")
        assert app.acted == acted
        assert (await client.post("/a")).json() == {"ok": True}  # the fault was used up


async def test_an_error_fault_answers_the_providers_body_or_its_own() -> None:
    faults, app = Faults(), Counter()
    faults.add("POST", "/a", "error", status=503)
    faults.add("POST", "/a", "error", status=429, body={"custom": 1})
    faults.add("POST", "/a", "delay", seconds=0.01)

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        await faults.serve(app, scope, receive, send, error=_error)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=served), base_url="https://emulator.test"
    ) as client:
        first, second, delayed = [await client.post("/a") for _ in range(3)]
    assert (first.status_code, first.json()) == (503, {"provider": "error"})
    assert (second.status_code, second.json()) == (429, {"custom": 1})
    assert (delayed.status_code, app.acted) == (200, 1)
