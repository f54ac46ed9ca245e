"""Background pipeline throughput: sandbox payments completed → every order paid.

    .venv/bin/python bench/worker_throughput.py [--payments 300] [--workers 1 2]

Creates a throw-away PostgreSQL database (``TILLPAY_TEST_PG_DSN``, default the local
``postgres``), pays N orders at the sandbox (their webhooks held back), starts K worker
processes running the pipeline's jobs (sandbox deliveries, webhook processing, outbox
relay; each process reaches the sandbox and the webhook route through its own in-process
app), releases the webhooks and times until every order is paid. Then it checks that no
payment was applied twice. Figures compare runs on one machine; they are not absolute.
"""

# ruff: noqa: ASYNC110, ASYNC220 - a benchmark driver polls and starts its workers

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, update

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.accounts.helpers import Accounts  # noqa: E402
from tests.commerce.helpers import Shop  # noqa: E402
from tests.payments.helpers import GOOD_CARD, Checkout  # noqa: E402

from tillpay import migrate  # noqa: E402
from tillpay.app import create_app  # noqa: E402
from tillpay.kit.db import Database, utcnow  # noqa: E402
from tillpay.kit.jobs import JobContext  # noqa: E402
from tillpay.ledger.models import LedgerTransaction  # noqa: E402
from tillpay.orders.models import Order  # noqa: E402
from tillpay.payments.models import WebhookEvent  # noqa: E402
from tillpay.sandbox.models import SandboxWebhook  # noqa: E402
from tillpay.settings import Settings  # noqa: E402
from tillpay.worker import Worker, registered_jobs  # noqa: E402

PG_ADMIN_DSN = os.environ.get(
    "TILLPAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PIPELINE = ("sandbox.deliver_webhooks", "payments.process_webhooks", "events.relay")
SECRET = secrets.token_urlsafe(48)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settings_for(url: str, data_dir: Path, **extra: Any) -> Settings:
    return Settings(
        environment="test",
        secret_key=SECRET,
        database_url=url,
        worker_in_process=False,
        data_dir=data_dir,
        mail_dir=data_dir / "mail",
        ratelimit_global="1000000/minute",
        ratelimit_policies={
            "auth": "100000/minute",
            "payments": "100000/minute",
            "webhooks": "1000000/minute",
        },
        password_hash_memory_kib=64,
        password_hash_iterations=1,
        log_level="WARNING",
        **extra,
    )


class SelfTransport(httpx.AsyncBaseTransport):
    """Provider calls and sandbox deliveries reach this process's own app."""

    def __init__(self) -> None:
        self.inner: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.inner is not None
        return await self.inner.handle_async_request(request)


async def admin_sql(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(settings: Settings, payments: int) -> None:
    """N orders paid at the sandbox, their webhooks held back."""
    transport = SelfTransport()
    app = create_app(settings, provider_transport=transport)
    transport.inner = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        checkout = Checkout(Shop(Accounts(client, settings.mail_dir)))
        vendor = await checkout.shop.vendor()
        product = await checkout.shop.product(vendor, price=1000, stock=payments + 10)
        variant = product["variants"][0]["id"]
        customers = [await checkout.shop.customer() for _ in range(max(1, payments // 50))]

        async def pay(index: int) -> None:
            customer = customers[index % len(customers)]
            cart = await checkout.shop.add_to_cart(customer, variant)
            assert cart.status_code == 200, cart.text
            order = (await checkout.shop.checkout(customer)).json()
            payment = (await checkout.pay(customer, order["id"])).json()
            assert (await checkout.submit_card(payment, GOOD_CARD)).status_code == 303

        for start in range(0, payments, len(customers)):
            await asyncio.gather(
                *(pay(i) for i in range(start, min(payments, start + len(customers))))
            )
        async with app.state.database.session() as session, session.begin():
            await session.execute(
                update(SandboxWebhook).values(deliver_at=utcnow().replace(year=2100))
            )


async def child(url: str, data_dir: Path) -> None:
    """One worker process running the pipeline's jobs until killed."""
    settings = settings_for(url, data_dir)
    transport = SelfTransport()
    app = create_app(settings, provider_transport=transport)
    transport.inner = httpx.ASGITransport(app=app)
    async with LifespanManager(app):
        context = JobContext(settings, Database.from_settings(settings), transport)
        jobs = [j for j in registered_jobs() if j.name in PIPELINE]
        worker = Worker(context, jobs)
        worker.start()
        print("ready", flush=True)
        await asyncio.Event().wait()


async def count(db: Database, query: Any) -> int:
    async with db.session() as session:
        return int((await session.execute(query)).scalar_one())


async def measure(url: str, data_dir: Path, payments: int, workers: int) -> dict[str, Any]:
    settings = settings_for(url, data_dir)
    await seed(settings, payments)
    db = Database.from_settings(settings)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    procs = [
        subprocess.Popen(  # noqa: S603 - this script, fixed arguments; at start
            [sys.executable, __file__, "--child", url, str(data_dir)],
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            while (line := proc.stdout.readline()) and line.strip() != b"ready":
                pass
            assert line, "a worker process died at start"
        await asyncio.sleep(3)  # past the start-up jitter of every job loop
        pending = Order.status == "pending_payment"
        before = await count(db, select(func.count()).select_from(Order).where(pending))
        async with db.session() as session, session.begin():
            await session.execute(update(SandboxWebhook).values(deliver_at=utcnow()))
        started = time.perf_counter()
        cpu_before = sum(cpu_seconds(proc.pid) for proc in procs)
        while await count(db, select(func.count()).select_from(Order).where(pending)):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = sum(cpu_seconds(proc.pid) for proc in procs) - cpu_before
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    postings = await count(
        db,
        select(func.count())
        .select_from(LedgerTransaction)
        .where(LedgerTransaction.kind == "payment"),
    )
    distinct = await count(
        db,
        select(func.count(func.distinct(LedgerTransaction.reference_id))).where(
            LedgerTransaction.kind == "payment"
        ),
    )
    events = await count(db, select(func.count()).select_from(WebhookEvent))
    await db.dispose()
    return {
        "workers": workers,
        "orders": before,
        "seconds": round(elapsed, 2),
        "events_per_s": round(before / elapsed, 1),
        "worker_cpu_ms_per_event": round(1000 * cpu / before, 1),
        "webhook_events": events,
        "payment_postings": postings,
        "doubled": postings - distinct,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", nargs=2, metavar=("URL", "DIR"))
    args = parser.parse_args()
    if args.child:
        await child(args.child[0], Path(args.child[1]))
        return
    base = PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
    for workers in args.workers:
        name = f"tillpay_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        await admin_sql(f'CREATE DATABASE "{name}"')
        try:
            url = f"{base}/{name}"
            with tempfile.TemporaryDirectory() as tmp:
                data_dir = Path(tmp)
                await asyncio.to_thread(migrate.upgrade, settings_for(url, data_dir))
                print(await measure(url, data_dir, args.payments, workers), flush=True)
        finally:
            await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
