"""Realtime across API processes: an event a worker handles next to one API process
reaches a socket open on another ``tillpay serve`` process, through Redis pub/sub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.harness.servers import Tillpay, server_env
from tests.realtime.conftest import Live, heard


async def test_a_payment_on_one_process_reaches_a_socket_on_another(
    backend: str, make_live, tmp_path: Path
) -> None:
    if backend != "postgres":
        pytest.skip("two processes share PostgreSQL and Redis")
    async with make_live() as live:
        live: Live  # type: ignore[no-redef]
        other = Tillpay(server_env(live.app, "http://127.0.0.1:9", tmp_path), tmp_path)
        try:
            _, base = await other.start()
            buyer = await live.shop.customer()
            socket_url = base.replace("http://", "ws://") + "/v1/ws"
            async with connect(socket_url, open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "auth", "token": buyer.access_token}))
                assert json.loads(await ws.recv())["type"] == "ready"

                # Paid through this process; published by this process's worker jobs.
                _, payment = await live.checkout.paid_order(buyer)
                await live.push()

                got = await heard(ws, "payment.succeeded", "order.paid", within=15)
                assert got["payment.succeeded"]["data"]["object"]["id"] == payment["id"]
        finally:
            other.stop_all()
