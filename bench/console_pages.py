"""Console admin page render times with 10,000 payments (issue 14): prints p50/p95 per page.

    PYTHONPATH=src:. python -m bench.console_pages [--payments 10000] [--rounds 40]

A fresh SQLite database under a temporary directory is migrated and seeded in bulk with
tillpay's own models (customers, a vendor, paid orders with lines, their payments, a
balanced ledger transaction each, audit rows); the app then runs in-process (httpx over
ASGI, no network) and an administrator signs in through the console's forms. Each page
is fetched ``--rounds`` times after a warm-up; figures are wall-clock per request.
Not a pass/fail test: it prints figures (docs/console.md).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import insert, update

import tillpay.models  # noqa: F401 - every mapped class, for the relationships
from tillpay import migrate
from tillpay.accounts.models import Role, User
from tillpay.app import create_app
from tillpay.audit.models import AuditChainHead, AuditEvent
from tillpay.kit.db import Database, utcnow
from tillpay.kit.ids import new_id
from tillpay.kit.passwords import PasswordHasher
from tillpay.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from tillpay.orders.models import Order, OrderLine, OrderStatus
from tillpay.payments.models import Payment, PaymentStatus
from tillpay.settings import Settings

PASSWORD = "bench passphrase " + secrets.token_hex(8)
PAGES = [
    "/console",
    "/console/payments",
    "/console/payments?status=succeeded",
    "/console/payments?email={email}",
    "/console/payments?needs_review=1",
    "/console/payments/{payment}",
    "/console/payments/{payment}/refund",
    "/console/orders",
    "/console/orders?status=paid",
    "/console/orders?email={email}",
    "/console/orders/{order}",
    "/console/customers",
    "/console/customers/{customer}",
    "/console/vendors",
    "/console/api-keys",
    "/console/ledger",
    "/console/ledger/accounts/{account}",
    "/console/audit",
    "/console/audit?action=order.status_changed",
    "/console/events",
    "/console/webhooks",
    "/console/activity",
    "/console/security",
]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _settings(root: Path) -> Settings:
    return Settings(
        environment="test",
        secret_key=secrets.token_urlsafe(48),
        database_url=f"sqlite+aiosqlite:///{root / 'bench.db'}",
        data_dir=root,
        worker_in_process=False,
        admin_require_2fa=False,  # the bench signs in with a password only
        ratelimit_global="1000000/minute",
        ratelimit_policies={"auth": "100000/minute"},
        password_hash_memory_kib=64,
        password_hash_iterations=1,
    )


async def _seed(settings: Settings, payments: int) -> dict[str, str]:
    database = Database.from_settings(settings)
    hasher = PasswordHasher()
    now = utcnow()
    admin = User(
        id=new_id("usr"),
        email="admin@bench.example",
        password_hash=await hasher.hash(PASSWORD),
        role=Role.ADMIN,
        email_verified_at=now,
    )
    vendor_id = new_id("usr")
    customers = [new_id("usr") for _ in range(200)]
    users: list[dict[str, Any]] = [
        {
            "id": vendor_id,
            "email": "vendor@bench.example",
            "password_hash": "x",
            "role": Role.VENDOR,
        }
    ]
    users += [
        {"id": c, "email": f"c{i}@bench.example", "password_hash": "x", "role": Role.CUSTOMER}
        for i, c in enumerate(customers)
    ]
    clearing, payable = new_id("lac"), new_id("lac")
    orders, lines, pays, txs, entries, audits = [], [], [], [], [], []
    for i in range(payments):
        order_id, payment_id, tx_id = new_id("ord"), new_id("pay"), new_id("ltx")
        customer = customers[i % len(customers)]
        amount = 1000 + i % 500
        # Spread over the overview's 30 days, so its charts aggregate real volume.
        created = now - timedelta(days=i % 30, minutes=i % 1440)
        orders.append(
            {
                "id": order_id,
                "customer_id": customer,
                "status": OrderStatus.PAID,
                "currency": "USD",
                "subtotal_amount": amount,
                "total_amount": amount,
                "refunded_amount": 0,
                "expires_at": now,
                "paid_at": created,
                "created_at": created,
            }
        )
        lines.append(
            {
                "id": new_id("oln"),
                "order_id": order_id,
                "product_id": "prd_bench",
                "variant_id": "var_bench",
                "vendor_id": vendor_id,
                "title": "Bench mug",
                "sku": "MUG",
                "unit_price_amount": amount,
                "quantity": 1,
                "line_total_amount": amount,
            }
        )
        pays.append(
            {
                "id": payment_id,
                "order_id": order_id,
                "customer_id": customer,
                "provider": "sandbox",
                "status": PaymentStatus.SUCCEEDED,
                "amount": amount,
                "currency": "USD",
                "amount_captured": amount,
                "created_at": created,
            }
        )
        txs.append(
            {
                "id": tx_id,
                "kind": "capture",
                "reference_type": "payment",
                "reference_id": payment_id,
            }
        )
        entries += [
            {
                "id": new_id("len"),
                "transaction_id": tx_id,
                "account_id": clearing,
                "amount": amount,
                "currency": "USD",
            },
            {
                "id": new_id("len"),
                "transaction_id": tx_id,
                "account_id": payable,
                "amount": -amount,
                "currency": "USD",
            },
        ]
    async with database.transaction() as session:
        session.add(admin)
        await session.execute(insert(User), users)
        session.add_all(
            [
                LedgerAccount(
                    id=clearing,
                    code="provider_clearing:sandbox:USD",
                    kind="provider_clearing",
                    currency="USD",
                ),
                LedgerAccount(
                    id=payable,
                    code=f"vendor_payable:{vendor_id}:USD",
                    kind="vendor_payable",
                    owner_id=vendor_id,
                    currency="USD",
                ),
            ]
        )
        await session.flush()
        for table, rows in (
            (Order, orders),
            (OrderLine, lines),
            (Payment, pays),
            (LedgerTransaction, txs),
            (LedgerEntry, entries),
        ):
            for start in range(0, len(rows), 2000):
                await session.execute(insert(table), rows[start : start + 2000])
        # Audit rows outside the chain's own appends (a bench, not a verifiable trail).
        for seq in range(1, payments + 1):
            audits.append(
                {
                    "id": new_id("aud"),
                    "occurred_at": now,
                    "action": "order.status_changed",
                    "outcome": "success",
                    "details": {},
                    "seq": seq,
                    "prev_hash": "0" * 64,
                    "hash": "0" * 64,
                    "target_type": "order",
                    "target_id": orders[seq - 1]["id"],
                }
            )
        for start in range(0, len(audits), 2000):
            await session.execute(insert(AuditEvent), audits[start : start + 2000])
        await session.execute(
            update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=payments, hash="0" * 64)
        )
    await database.dispose()
    return {
        "email": "c1@bench.example",
        "order": str(orders[-1]["id"]),
        "payment": str(pays[-1]["id"]),
        "customer": customers[1],
        "account": payable,
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(settings: Settings, payments: int, rounds: int) -> None:
    if True:
        started = time.perf_counter()
        names = await _seed(settings, payments)
        print(f"seeded {payments} paid orders/payments in {time.perf_counter() - started:.1f} s")
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=60):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as web:
                form = await web.get("/console/login")
                token = _CSRF.search(form.text)
                assert token is not None
                signed = await web.post(
                    "/console/login",
                    data={
                        "csrf_token": token.group(1),
                        "email": "admin@bench.example",
                        "password": PASSWORD,
                    },
                    headers={"Origin": "https://localhost", "Sec-Fetch-Site": "same-origin"},
                )
                assert signed.status_code == 303, signed.text
                print(f"{'page':48} {'p50 ms':>8} {'p95 ms':>8}")
                for template in PAGES:
                    path = template.format(**names)
                    times = []
                    for i in range(rounds + 3):
                        begin = time.perf_counter()
                        response = await web.get(path)
                        elapsed = (time.perf_counter() - begin) * 1000
                        assert response.status_code == 200, (path, response.status_code)
                        if i >= 3:  # warm-up
                            times.append(elapsed)
                    label = template.replace("{", "<").replace("}", ">")
                    print(
                        f"{label:48} {statistics.median(times):8.1f} {_percentile(times, 0.95):8.1f}"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tillpay-console-bench-") as tmp:
        settings = _settings(Path(tmp))
        migrate.upgrade(settings)  # its own event loop: before ours
        asyncio.run(run(settings, args.payments, args.rounds))


if __name__ == "__main__":
    main()
