"""Two and four real ``tillpay worker`` processes on one PostgreSQL database deliver every
outbox event to a merchant endpoint, each exactly once (SKIP LOCKED claims), and never
more at once than the endpoint's limit (slots shared by the processes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import REDIS_TEST_PREFIX, SESSION_SECRET
from tests.webhooks.conftest import Hooks
from tests.webhooks.receiver import Receiver
from tillpay.events.models import DeliveryStatus, EventDelivery, OutboxEvent

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 12
LIMIT = 2


def _env(hooks: Hooks, receiver: Receiver, data_dir: Path) -> dict[str, str]:
    settings = hooks.context().settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLPAY_")}
    env.update(
        # This checkout's code, whatever the venv's editable install or a relative
        # PYTHONPATH (the workers run in tmp_path) would import.
        PYTHONPATH=f"{ROOT / 'src'}:{ROOT}",
        TILLPAY_ENVIRONMENT="test",
        TILLPAY_DATABASE_URL=settings.database_url.get_secret_value(),
        TILLPAY_REDIS_URL=settings.redis_url.get_secret_value(),
        TILLPAY_REDIS_KEY_PREFIX=REDIS_TEST_PREFIX,
        TILLPAY_SECRET_KEY=SESSION_SECRET,
        TILLPAY_WORKER_IN_PROCESS="false",
        TILLPAY_WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        TILLPAY_WEBHOOKS_ALLOWED_PORTS=json.dumps([receiver.port]),
        TILLPAY_WEBHOOKS_ENDPOINT_CONCURRENCY=str(LIMIT),
        TILLPAY_DATA_DIR=str(data_dir),
    )
    return env


@pytest.mark.parametrize("count", [2, 4])
async def test_worker_processes_deliver_every_event_to_an_endpoint_exactly_once(
    hooks: Hooks, receiver: Receiver, backend: str, tmp_path: Path, count: int
) -> None:
    if backend != "postgres":
        pytest.skip("worker processes share a PostgreSQL database")
    await hooks.endpoint(receiver.url, ["order.paid", "payment.succeeded"])
    customer = await hooks.checkout.shop.customer()
    for _ in range(ORDERS):
        await hooks.checkout.paid_order(customer)
    database = hooks.context().database
    async with database.read_session() as session:
        events = set(
            (
                await session.execute(
                    select(OutboxEvent.id).where(
                        OutboxEvent.type.in_(["order.paid", "payment.succeeded"])
                    )
                )
            ).scalars()
        )

    for _ in range(2 * ORDERS):
        receiver.answer(200, b"ok", 0.1)  # slow enough for requests to overlap
    env = _env(hooks, receiver, tmp_path)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            with (tmp_path / f"worker-{n}.log").open("wb") as log:
                workers.append(
                    subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                        [sys.executable, "-m", "tillpay.cli", "worker"],
                        env=env,
                        cwd=tmp_path,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        pending = select(func.count()).where(EventDelivery.status != DeliveryStatus.DELIVERED)
        total = select(func.count()).select_from(EventDelivery)
        for _ in range(600):
            async with database.read_session() as session:
                if await session.scalar(total) and not await session.scalar(pending):
                    break
            await asyncio.sleep(0.1)
        for worker in workers:
            worker.terminate()
        assert [worker.wait(timeout=60) for worker in workers] == [0] * count
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)

    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)), "an event reached the endpoint twice"
    assert set(ids) == events  # two per order: order.paid and payment.succeeded
    assert len(events) == 2 * ORDERS
    assert receiver.most_in_flight["/hooks/tillpay"] == LIMIT
