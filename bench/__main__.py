"""tillpay's benchmark suite (issue 11): ``python3 dev.py bench [--quick] [options]``.

Starts tillpay in a production-like profile on PostgreSQL and on SQLite next to the
baselines B0 (FastAPI returning a constant) and B1 (FastAPI doing one primary-key
SELECT: asyncpg on PostgreSQL, aiosqlite on SQLite), seeds data, and measures:

- catalog, order_read, me: wrk, each run interleaved with its baselines (A B A B A B);
- checkout_pay: 16 concurrent customers, cart → checkout → sandbox payment → paid;
- webhook: N pending sandbox payments completed at once, in-process and separate workers,
  then SQL checks (nothing lost, nothing doubled, ledger balanced);
- login_storm: order_read at half its max rate, before vs during 8 clients signing in;
- soak: checkout_pay for 10 minutes (45 s with --quick): RSS slope, p99 first vs last;
- round trips to PostgreSQL and Redis per request, in a separate counting phase.

Prints a table per scenario and writes bench/results/latest.json. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.backend import Backend, Plan, say
from bench.scenarios import ensure_wrk
from bench.servers import PROFILE, Stack, tillpay_src

SINGLE = ("catalog", "order_read", "me")
ALL = (*SINGLE, "checkout_pay", "login_storm", "webhook", "soak")


def parse(argv: list[str]) -> tuple[Plan, list[str]]:
    parser = argparse.ArgumentParser(prog="dev.py bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the < 3 minute run")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run (full 5, quick 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--tillpay-src",
        help="serve tillpay from another checkout's src/ (e.g. a `git worktree` of an older "
        "commit), for before/after figures in one run's conditions",
    )
    parser.add_argument("--soak-seconds", type=float, help="soak length (full 600, quick 45)")
    parser.add_argument("--webhook-count", type=int, help="pending payments (full 300, quick 50)")
    parser.add_argument(
        "--backends", default="postgres,sqlite", help="comma-separated: postgres,sqlite"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios out of {','.join(ALL)}"
    )
    args = parser.parse_args(argv)
    if args.tillpay_src:
        os.environ["BENCH_TILLPAY_SRC"] = str(Path(args.tillpay_src).resolve())
    quick = bool(args.quick)
    scenarios = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = scenarios - set(ALL)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    plan = Plan(
        quick=quick,
        seconds=args.seconds or (1.0 if quick else 5.0),
        rounds=args.rounds,
        connections=args.connections,
        checkout_seconds=5.0 if quick else 20.0,
        storm_seconds=3.0 if quick else 10.0,
        soak_seconds=args.soak_seconds or (45.0 if quick else 600.0),
        webhook_count=args.webhook_count or (50 if quick else 300),
        webhook_modes=(
            ["in-process worker"]
            if quick
            else ["in-process worker", "1 worker process", "2 worker processes"]
        ),
        rtt_requests=10 if quick else 50,
        rtt_flows=1 if quick else 10,
        orders_each=1 if quick else 3,
        scenarios=scenarios,
    )
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not set(backends) <= {"postgres", "sqlite"}:
        parser.error("--backends: postgres and/or sqlite")
    return plan, backends


async def run(stack: Stack, plan: Plan, backends: list[str], data: dict[str, Any]) -> None:
    wrk = ensure_wrk()
    b0 = await stack.start_baseline("b0", "b0", stack.tillpay_env("sqlite+aiosqlite://", 1))
    printed: list[str] = []
    queue = [Backend(stack, kind, b0, wrk, plan) for kind in backends]
    for backend in queue:
        data["backends"][backend.kind] = backend.result
    try:
        await measure(queue, plan, printed)
    finally:
        await stack.close_proxies()
    data["tables"] = "\n".join(printed)


async def measure(queue: list[Backend], plan: Plan, printed: list[str]) -> None:
    # Set-up is untimed: every backend's at once, the later ones' servers stopped again.
    await asyncio.gather(*(b.setup(first=i == 0) for i, b in enumerate(queue)))
    for index, backend in enumerate(queue):
        await backend.start()
        await timed_phases(backend, plan, flows=index == 0)
        # The next backend's servers start during this one's (untimed) counting phase.
        following = queue[index + 1 :]
        await asyncio.gather(backend.run_round_trips(), *(b.start() for b in following[:1]))
        backend.tables()
        printed.extend(backend.printed)
        await backend.stop()


async def timed_phases(backend: Backend, plan: Plan, *, flows: bool) -> None:
    """The timed scenarios; the chained flows only on the first backend (``flows``)."""
    await backend.run_single()
    if not flows:
        return
    # --quick reports checkout_pay from its soak (the same 16-customer workload).
    if plan.wants("checkout_pay") and not plan.quick:
        await backend.run_checkout()
    if plan.wants("login_storm"):
        await backend.run_storm()
    if plan.wants("webhook"):
        await backend.run_webhook(plan.webhook_modes)
    if plan.wants("soak") or (plan.quick and plan.wants("checkout_pay")):
        await backend.run_soak(as_checkout=plan.quick and plan.wants("checkout_pay"))


def header(data: dict[str, Any], plan: Plan) -> str:
    m = data["machine"]
    return (
        f"tillpay benchmark ({'quick' if plan.quick else 'full'}) at commit "
        f"{m['git_commit'][:12]}{' (dirty)' if m['git_dirty'] else ''}; nproc {m['nproc']}, "
        f"load average at start {m['loadavg_at_start'][0]:.2f}\n"
        f"tillpay served from: {tillpay_src()}\n"
        f"profile: {PROFILE}\n"
        f"servers: uvicorn, one process each, uvicorn's default (auto) loop and http "
        f"implementation for tillpay and the baselines, uvicorn access log off "
        f"(tillpay's own access log on, JSON at INFO)\n"
        f"wrk: 1 thread, {plan.connections} connections, {plan.seconds:.0f} s per run, "
        f"{plan.rounds} rounds interleaved tillpay/B1/B0"
        f" (B0, which ignores the scenario: once per backend, at its first scenario"
        f"{', in round 1 only' if plan.quick else ''})"
    )


def main(argv: list[str]) -> int:
    plan, backends = parse(argv)
    stack = Stack()
    data: dict[str, Any] = {
        "machine": report.machine_info(),
        "profile": PROFILE,
        "plan": vars(plan) | {"scenarios": sorted(plan.scenarios)},
        "backends": {},
    }
    data["header"] = header(data, plan)
    print(data["header"], flush=True)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    status = 0
    try:
        asyncio.run(run(stack, plan, backends, data))
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        status = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit non-zero
        say(f"failed: {type(exc).__name__}: {exc}")
        data["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    finally:
        notes = asyncio.run(stack.close())
        data["cleanup"] = notes
        data["wall_seconds"] = time.monotonic() - started
        path = report.write_json(data)
        say(f"cleanup: {'; '.join(notes)}; wall {data['wall_seconds']:.0f} s; wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
