"""What "done" means for events, end to end with a real ``tillpay worker`` process, the
real broker, a real SMTP server and a real receiver: after a sandbox payment, the shop's
endpoint receives a verifiable ``order.paid``, the customer's open WebSocket hears the
payment, and a receipt lands in the mailbox, each exactly once, even though the broker,
the SMTP server and the receiver were all down for a while."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from tests.harness.servers import free_port, server_env
from tests.hub.conftest import AMQP_URL
from tests.realtime.conftest import Live, heard
from tests.unit.test_mail import Inbox, smtp_server
from tests.webhooks.conftest import Hooks, webhook_settings
from tests.webhooks.receiver import Receiver
from tillpay.events.models import EventDelivery
from tillpay.hub import broker

pytestmark = pytest.mark.rabbitmq

ROOT = Path(__file__).resolve().parents[2]
CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/"


def worker_env(
    live: Live, receiver: Receiver, topology: broker.Topology, smtp_port: int, data: Path
) -> dict[str, str]:
    env = server_env(live.app, "http://127.0.0.1:9", data)
    env.update(
        PYTHONPATH=f"{ROOT / 'src'}:{ROOT}",
        TILLPAY_BROKER_EXCHANGE=topology.exchange,
        TILLPAY_WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        TILLPAY_WEBHOOKS_ALLOWED_PORTS=json.dumps([receiver.port]),
        TILLPAY_WEBHOOKS_RETRY_SCHEDULE="[0, 1, 300]",
        TILLPAY_SMTP_HOST="127.0.0.1",
        TILLPAY_SMTP_PORT=str(smtp_port),
        TILLPAY_SMTP_STARTTLS="false",
        TILLPAY_SMTP_ALLOW_PLAINTEXT="true",
        TILLPAY_SMTP_TIMEOUT_SECONDS="2",
    )
    return env


def start_worker(env: dict[str, str], broker_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "tillpay.cli", "worker"],
            env={**env, "TILLPAY_BROKER_URL": broker_url},
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stop(worker: subprocess.Popen[bytes]) -> int:
    worker.terminate()
    return worker.wait(timeout=60)


async def until(check: Callable[[], Any], *, seconds: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        await asyncio.sleep(0.1)


def receipts(inbox: Inbox) -> list[Any]:
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(e.content) for e in inbox.envelopes]  # type: ignore[arg-type]
    return [m for m in messages if m["X-Tillpay-Category"] == "receipt"]


async def test_after_outages_of_broker_smtp_and_receiver_everything_arrives_exactly_once(
    backend: str,
    make_live: Any,
    receiver: Receiver,
    topology: broker.Topology,
    tmp_path: Path,
    mail_dir: Path,
) -> None:
    if backend != "postgres":
        pytest.skip("a worker process shares PostgreSQL and Redis with the API")
    smtp_port = free_port()  # nothing listens there yet: the mail server is down
    async with make_live(
        broker_url=AMQP_URL, broker_exchange=topology.exchange, **webhook_settings(receiver)
    ) as live:
        live: Live  # type: ignore[no-redef]
        hooks = Hooks(live.client, mail_dir)
        endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
        buyer = await live.shop.customer()
        env = worker_env(live, receiver, topology, smtp_port, tmp_path)
        receiver.answer(500, b"down for maintenance")  # the receiver's first answer
        database = live.app.state.database
        inbox = Inbox()
        worker = start_worker(env, CLOSED_BROKER, tmp_path / "worker-down.log")
        try:
            async with live.socket(buyer) as ws:
                order, payment = await live.checkout.paid_order(buyer)

                # The broker is down: the events wait in the outbox, nothing goes out.
                async def publishing_failed() -> bool:
                    async with database.read_session() as session:
                        rows = await session.execute(
                            select(EventDelivery).where(EventDelivery.consumer == "broker")
                        )
                        return any(d.attempts >= 1 for d in rows.scalars())

                await until(publishing_failed, seconds=30, what="a failed publish")
                assert stop(worker) == 0
                assert receiver.received == []

                # The broker is back (the worker restarted against it); SMTP still down.
                worker = start_worker(env, AMQP_URL, tmp_path / "worker-up.log")

                async def mail_failed() -> bool:
                    async with database.read_session() as session:
                        rows = await session.execute(
                            select(EventDelivery).where(EventDelivery.consumer == "email")
                        )
                        return any(d.attempts >= 1 and d.last_error for d in rows.scalars())

                await until(mail_failed, seconds=60, what="a failed mail attempt")

                # The mail server is back before the retry (10 s after the failure) is due.
                async with smtp_server(port=smtp_port, inbox=inbox):
                    heard_events = await heard(ws, "payment.succeeded", "order.paid", within=30)

                    async def all_arrived() -> bool:
                        delivered = [r for r in receiver.received if b'"order.paid"' in r.body]
                        return len(delivered) >= 2 and len(receipts(inbox)) >= 1

                    await until(all_arrived, seconds=60, what="the webhook and the receipt")
                    await asyncio.sleep(2)  # anything doubled would arrive by now
                    assert stop(worker) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)

    # The receiver answered 500 once, then 200: two attempts of one event, one webhook-id.
    attempts = [r for r in receiver.received if b'"order.paid"' in r.body]
    assert len(attempts) == 2
    assert len({r.headers["webhook-id"] for r in attempts}) == 1
    verified = Webhook(endpoint["secret"]).verify(attempts[-1].body, attempts[-1].headers)
    assert verified["data"]["object"]["id"] == order["id"]
    assert verified["data"]["object"]["status"] == "paid"

    assert heard_events["payment.succeeded"]["data"]["object"]["id"] == payment["id"]

    [receipt] = receipts(inbox)
    assert receipt["To"] == buyer.email
    assert order["id"] in receipt["Subject"]
