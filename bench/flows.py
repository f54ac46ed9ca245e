"""Chained flows driven by asyncio + httpx: checkout_pay, webhook, login_storm, soak."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.seed import HOST, Customer, login, place_order
from bench.servers import Server

GOOD_CARD = "4242 4242 4242 4242"
ACTION = re.compile(r"action='([^']+)'")
POLL_SECONDS = 0.5


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def create_payment(
    client: httpx.AsyncClient, customer: Customer, variant_id: str
) -> dict[str, Any]:
    """Cart → checkout → sandbox payment (requires_action, with its hosted page)."""
    order = await place_order(client, customer, variant_id)
    response = await client.post(
        f"/v1/orders/{order['id']}/payments",
        json={"provider": "sandbox"},
        headers={**customer.headers, "idempotency-key": str(uuid.uuid4())},
    )
    if response.status_code != 201:
        raise RuntimeError(f"payment answered {response.status_code}: {response.text[:300]}")
    payment: dict[str, Any] = response.json()
    payment["order_id"] = order["id"]
    return payment


async def pay_on_sandbox(client: httpx.AsyncClient, payment: dict[str, Any]) -> None:
    """Open the hosted page and post the card form, as a browser would."""
    page = await client.get(payment["next_action"]["redirect_url"], headers=HOST)
    page.raise_for_status()
    action = ACTION.search(page.text)
    if action is None:
        raise RuntimeError("the sandbox page has no form")
    submitted = await client.post(
        action.group(1),
        data={"card_number": GOOD_CARD},
        headers={"content-type": "application/x-www-form-urlencoded", **HOST},
    )
    if submitted.status_code != 303:
        raise RuntimeError(f"card submit answered {submitted.status_code}")


def flow_for(variant_ids: list[str]) -> Callable[..., Any]:
    counter = iter(range(1 << 62))

    async def checkout_pay(
        client: httpx.AsyncClient, customer: Customer, *, poll: bool = True
    ) -> None:
        variant = variant_ids[next(counter) % len(variant_ids)]
        payment = await create_payment(client, customer, variant)
        await pay_on_sandbox(client, payment)
        if not poll:
            return
        # As a shop front would: poll the order every 0.5 s (the sandbox delivers its
        # webhooks and the worker processes them on 1 s job intervals; faster polling
        # would mostly measure the polling).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            order = await client.get(f"/v1/orders/{payment['order_id']}", headers=customer.headers)
            if order.json().get("status") == "paid":
                return
        raise RuntimeError(f"order {payment['order_id']} not paid after 60 s")

    return checkout_pay


async def checkout_load(
    server: Server,
    customers: list[Customer],
    flow: Callable[..., Any],
    seconds: float,
    *,
    sample: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``len(customers)`` concurrent customers doing checkout_pay flows for ``seconds``."""
    finished: list[tuple[float, float]] = []  # (end time since start, flow seconds)
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    cpu_before = server.cpu()
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:

        async def customer_loop(customer: Customer) -> None:
            while time.perf_counter() < deadline:
                begin = time.perf_counter()
                try:
                    await flow(client, customer)
                except (RuntimeError, httpx.HTTPError) as exc:
                    errors.append(str(exc)[:200])
                    await asyncio.sleep(0.2)
                    continue
                end = time.perf_counter()
                finished.append((end - started, end - begin))

        async def sampler() -> None:
            while sample is not None and time.perf_counter() < deadline:
                sample()
                await asyncio.sleep(5)

        await asyncio.gather(sampler(), *(customer_loop(c) for c in customers))
    elapsed = time.perf_counter() - started
    durations = [d for _, d in finished]
    return {
        "flows": len(finished),
        "flows_per_s": len(finished) / elapsed,
        "p50_ms": pct(durations, 50) * 1000,
        "p99_ms": pct(durations, 99) * 1000,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "cpu_ms_per_flow": (server.cpu() - cpu_before) * 1000 / max(1, len(finished)),
        "rss_mib": server.rss(),
        "finished": finished,
    }


# --- webhook ----------------------------------------------------------------------------------


async def webhook_burst(
    server: Server,
    database_url: str,
    customers: list[Customer],
    variant_ids: list[str],
    count: int,
) -> dict[str, Any]:
    """``count`` pending sandbox payments completed at once: time until every order is
    paid, then the SQL checks (one succeeded payment per order, one balanced ledger
    transaction per payment)."""
    semaphore = asyncio.Semaphore(8)
    payments: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:

        async def prepare(index: int, customer: Customer, each: int) -> None:
            async with semaphore:
                for n in range(each):
                    variant = variant_ids[(index * 31 + n) % len(variant_ids)]
                    payments.append(await create_payment(client, customer, variant))

        each, extra = divmod(count, len(customers))
        await asyncio.gather(*(prepare(i, c, each + (i < extra)) for i, c in enumerate(customers)))
        started = time.perf_counter()
        submit = asyncio.Semaphore(16)

        async def complete(payment: dict[str, Any]) -> None:
            async with submit:
                await pay_on_sandbox(client, payment)

        await asyncio.gather(*(complete(p) for p in payments))
        submitted = time.perf_counter() - started
    order_ids = [p["order_id"] for p in payments]
    payment_ids = [p["id"] for p in payments]
    engine = create_async_engine(database_url)
    try:
        paid_sql = text(
            "SELECT count(*) FROM orders WHERE id IN :ids AND lower(status) = 'paid'"
        ).bindparams(bindparam("ids", expanding=True))
        paid = 0
        timeout = time.perf_counter() + 180
        while time.perf_counter() < timeout:
            async with engine.connect() as connection:
                paid = (await connection.execute(paid_sql, {"ids": order_ids})).scalar_one()
            if paid >= count:
                break
            await asyncio.sleep(0.1)
        seconds = time.perf_counter() - started
        checks = await _ledger_checks(engine, order_ids, payment_ids)
    finally:
        await engine.dispose()
    return {
        "payments": count,
        "paid": paid,
        "submit_s": submitted,
        "seconds_until_all_paid": seconds,
        "events_per_s": paid / seconds,
        **checks,
    }


async def _ledger_checks(
    engine: Any, order_ids: list[str], payment_ids: list[str]
) -> dict[str, int]:
    def q(sql: str, *names: str) -> Any:
        return text(sql).bindparams(*(bindparam(n, expanding=True) for n in names))

    async with engine.connect() as connection:
        succeeded = dict(
            (
                await connection.execute(
                    q(
                        "SELECT order_id, count(*) FROM payments WHERE order_id IN :ids "
                        "AND lower(status) = 'succeeded' GROUP BY order_id",
                        "ids",
                    ),
                    {"ids": order_ids},
                )
            ).all()
        )
        ledger = dict(
            (
                await connection.execute(
                    q(
                        "SELECT reference_id, count(*) FROM ledger_transactions WHERE "
                        "kind = 'payment' AND reference_id IN :ids GROUP BY reference_id",
                        "ids",
                    ),
                    {"ids": payment_ids},
                )
            ).all()
        )
        unbalanced = (
            await connection.execute(
                q(
                    "SELECT t.id FROM ledger_transactions t JOIN ledger_entries e "
                    "ON e.transaction_id = t.id WHERE t.reference_id IN :ids "
                    "GROUP BY t.id, e.currency HAVING sum(e.amount) <> 0",
                    "ids",
                ),
                {"ids": payment_ids},
            )
        ).all()
    return {
        "orders_without_succeeded_payment": sum(1 for o in order_ids if succeeded.get(o, 0) == 0),
        "orders_with_doubled_payment": sum(1 for o in order_ids if succeeded.get(o, 0) > 1),
        "payments_without_ledger_tx": sum(1 for p in payment_ids if ledger.get(p, 0) == 0),
        "payments_with_doubled_ledger_tx": sum(1 for p in payment_ids if ledger.get(p, 0) > 1),
        "unbalanced_ledger_tx": len(unbalanced),
    }


# --- login storm -----------------------------------------------------------------------------


async def fixed_rate(
    server: Server, entries: list[tuple[str, str]], rate: float, seconds: float
) -> dict[str, Any]:
    """Open-loop load at ``rate`` req/s; latency counted from each request's scheduled
    start (no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.base, timeout=30, limits=limits) as client:

        async def one(index: int, scheduled: float) -> None:
            nonlocal errors
            path, token = entries[index % len(entries)]
            try:
                response = await client.get(
                    path, headers={"authorization": f"Bearer {token}", **HOST}
                )
                if response.status_code >= 300:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
    return {
        "requests": len(latencies),
        "rate": rate,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "errors": errors,
    }


async def login_storm(
    server: Server,
    entries: list[tuple[str, str]],
    stormers: list[Customer],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """order_read at ``rate`` before and during len(stormers) clients signing in non-stop."""
    before = await fixed_rate(server, entries, rate, seconds)
    stop = time.perf_counter() + seconds
    logins = 0
    login_errors = 0
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:

        async def storm(customer: Customer) -> None:
            nonlocal logins, login_errors
            while time.perf_counter() < stop:
                try:
                    await login(client, Customer(email=customer.email))
                    logins += 1
                except httpx.HTTPError:
                    login_errors += 1

        during, *_ = await asyncio.gather(
            fixed_rate(server, entries, rate, seconds), *(storm(c) for c in stormers)
        )
    return {
        "before": before,
        "during": during,
        "logins_per_s": logins / seconds,
        "login_errors": login_errors,
        "p99_ratio": during["p99_ms"] / before["p99_ms"] if before["p99_ms"] else float("nan"),
    }


def slope_mib_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        return float("nan")
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 60 if var else float("nan")
