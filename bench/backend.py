"""Everything measured on one database backend (PostgreSQL or SQLite)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench import flows, report
from bench.rtt_proxy import RttProxy
from bench.scenarios import count_round_trips, interleaved, single_scenarios, warm_up
from bench.seed import Seeded, seed_api, seed_rows
from bench.servers import PG_HOST, REDIS_HOST, Server, Stack, free_port

ORDER_READ_CUSTOMERS = 100
CHECKOUT_CUSTOMERS = 16
STORM_CUSTOMERS = 8


@dataclass
class Plan:
    quick: bool
    seconds: float
    rounds: int
    connections: int
    checkout_seconds: float
    storm_seconds: float
    soak_seconds: float
    webhook_count: int
    webhook_modes: list[str]
    rtt_requests: int
    rtt_flows: int
    orders_each: int
    scenarios: set[str]

    def wants(self, name: str) -> bool:
        return not self.scenarios or name in self.scenarios


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Backend:
    def __init__(self, stack: Stack, kind: str, b0: Server, wrk: str, plan: Plan) -> None:
        self.stack, self.kind, self.b0, self.wrk, self.plan = stack, kind, b0, wrk, plan
        self.result: dict[str, Any] = {"scenarios": {}}
        self.printed: list[str] = []

    def show(self, text: str) -> None:
        print(text, flush=True)
        self.printed.append(text)

    async def setup(self, *, first: bool) -> None:
        """Create, migrate and seed the database. The ``first`` backend keeps its servers
        running and runs the flows; the others' servers stop until :meth:`start`."""
        if self.kind == "postgres":
            name = await self.stack.create_database()
            self.url = f"postgresql+asyncpg://postgres@{PG_HOST}/{name}"
            self.b1_env = {"BENCH_B1_DSN": f"postgresql://postgres@{PG_HOST}/{name}"}
            self.b1_app = "b1_pg"
        else:
            path = self.stack.workdir / "bench.db"
            self.url = f"sqlite+aiosqlite:///{path}"
            self.b1_env = {"BENCH_B1_SQLITE": str(path)}
            self.b1_app = "b1_sqlite"
        self.env = self.stack.tillpay_env(self.url, free_port())
        say(f"{self.kind}: migrating")
        await asyncio.to_thread(self.stack.migrate, self.env)
        total = ORDER_READ_CUSTOMERS + CHECKOUT_CUSTOMERS + STORM_CUSTOMERS
        say(f"{self.kind}: seeding 1000 products and {total} customers")
        self.seeded: Seeded = await seed_rows(self.url, products=1000, customers=total)
        self.server = await self.stack.start_tillpay(f"tillpay-{self.kind}", self.env)
        self.b1_env["BENCH_B1_ID"] = self.seeded.product_id
        say(f"{self.kind}: signing customers in, {self.plan.orders_each} order(s) each (API)")
        customers = self.seeded.customers
        self.readers = customers[:ORDER_READ_CUSTOMERS]
        self.buyers = customers[ORDER_READ_CUSTOMERS : ORDER_READ_CUSTOMERS + CHECKOUT_CUSTOMERS]
        self.stormers = customers[ORDER_READ_CUSTOMERS + CHECKOUT_CUSTOMERS :]
        # The stormers sign in during the storm; on SQLite only the counting phase's
        # first buyer is needed on the backends that do not run the flows.
        buyers = self.buyers if first else self.buyers[:1]
        await asyncio.gather(
            seed_api(
                self.server.base,
                self.seeded,
                sign_in=[*self.readers, *buyers],
                with_orders=self.readers,
                orders_each=self.plan.orders_each,
            ),
            self.prepare_counting(),
        )
        self.b1 = await self.stack.start_baseline(
            f"b1-{self.kind}", self.b1_app, {**self.env, **self.b1_env}
        )
        if not first:
            await self.stop()
        self.scenarios = single_scenarios(
            Seeded(self.readers, self.seeded.variant_ids, self.seeded.product_id, 1000)
        )
        self.flow = flows.flow_for(self.seeded.variant_ids)
        self.result["seeded"] = {
            "products": self.seeded.products,
            "customers": len(customers),
            "orders": sum(len(c.order_ids) for c in customers),
        }

    async def stop(self) -> None:
        await self.stack.stop_all([self.server.process, self.b1.process])

    async def start(self) -> None:
        """(Re)start tillpay and B1 when :meth:`setup` left them stopped."""
        if self.server.process.poll() is not None:
            say(f"{self.kind}: starting tillpay and B1")
            self.server, self.b1 = await asyncio.gather(
                self.stack.start_tillpay(self.server.name, self.env),
                self.stack.start_baseline(self.b1.name, self.b1_app, {**self.env, **self.b1_env}),
            )

    async def run_single(self) -> None:
        plan = self.plan
        b0_runs: list[dict[str, Any]] | None = None
        for scenario in self.scenarios:
            if not plan.wants(scenario.name):
                continue
            targets = {"tillpay": self.server, "B1": self.b1, "B0": self.b0}
            if b0_runs is not None:
                del targets["B0"]  # B0 ignores the scenario: one set of runs per backend
            say(f"{self.kind}: {scenario.name} (warm-up, then {plan.rounds} interleaved rounds)")
            for server in targets.values():
                await warm_up(server, scenario, 10 if plan.quick else 60)
            runs = await interleaved(
                self.wrk,
                scenario,
                targets,
                self.stack.workdir,
                rounds=plan.rounds,
                seconds=plan.seconds,
                connections=plan.connections,
                once=frozenset({"B0"}) if plan.quick else frozenset(),
            )
            if b0_runs is None:
                b0_runs = runs["B0"]
            runs.setdefault("B0", b0_runs)
            self.result["scenarios"][scenario.name] = {
                "runs": runs,
                "summary": {name: report.summarize(r) for name, r in runs.items()},
                "ratio": report.ratio(runs["tillpay"], runs["B1"]),
            }

    async def run_checkout(self) -> None:
        say(f"{self.kind}: checkout_pay, {CHECKOUT_CUSTOMERS} customers")
        result = await flows.checkout_load(
            self.server, self.buyers, self.flow, self.plan.checkout_seconds
        )
        result.pop("finished")
        self.result["scenarios"]["checkout_pay"] = result

    async def run_storm(self) -> None:
        reads = self.result["scenarios"].get("order_read")
        max_rps = reads["summary"]["tillpay"]["rps"] if reads else 100.0
        rate = max(10.0, max_rps / 2)
        say(f"{self.kind}: login_storm, order_read at {rate:.0f} req/s")
        entries = next(s for s in self.scenarios if s.name == "order_read").entries
        result = await flows.login_storm(
            self.server, entries, self.stormers, rate, self.plan.storm_seconds
        )
        result["stormers"] = len(self.stormers)
        self.result["scenarios"]["login_storm"] = result

    async def run_webhook(self, modes: list[str]) -> None:
        results: dict[str, dict[str, Any]] = {}
        self.result["scenarios"]["webhook"] = results
        for mode in modes:
            say(f"{self.kind}: webhook, {self.plan.webhook_count} payments, {mode}")
            if mode == "in-process worker":
                results[mode] = await flows.webhook_burst(
                    self.server, self.url, self.readers, self.seeded.variant_ids,
                    self.plan.webhook_count,
                )  # fmt: skip
                continue
            workers = int(mode.split()[0])
            if self.server.process.poll() is None:
                # Its in-process worker would run the same jobs: only the worker
                # processes under test may.
                await self.stack.stop_all([self.server.process])
            env = self.stack.tillpay_env(self.url, free_port(), TILLPAY_WORKER_IN_PROCESS="false")
            api = await self.stack.start_tillpay(f"tillpay-{self.kind}-noworker", env)
            processes = [
                self.stack.start_worker(f"worker-{self.kind}-{i}", env) for i in range(workers)
            ]
            try:
                await asyncio.sleep(2)  # the workers connect and start their job loops
                results[mode] = await flows.webhook_burst(
                    api, self.url, self.readers, self.seeded.variant_ids, self.plan.webhook_count
                )
            finally:
                await self.stack.stop_all([*processes, api.process])
        if self.server.process.poll() is not None:
            self.server = await self.stack.start_tillpay(self.server.name, self.env)

    async def run_soak(self, *, as_checkout: bool = False) -> None:
        seconds = self.plan.soak_seconds
        say(f"{self.kind}: soak, checkout_pay for {seconds:.0f} s")
        started = time.perf_counter()
        samples: list[tuple[float, float]] = []

        def sample() -> None:
            samples.append((time.perf_counter() - started, self.server.rss()))

        result = await flows.checkout_load(
            self.server, self.buyers, self.flow, seconds, sample=sample
        )
        samples.append((time.perf_counter() - started, self.server.rss()))
        finished = result.pop("finished")
        window = 60.0 if seconds >= 180 else seconds / 3
        first = [d for t, d in finished if t <= window]
        last = [d for t, d in finished if t >= seconds - window]
        result.update(
            seconds=seconds,
            window_s=window,
            rss_samples=samples,
            rss_first=samples[0][1],
            rss_last=samples[-1][1],
            rss_slope_mib_per_min=flows.slope_mib_per_min(samples),
            p99_first_ms=flows.pct(first, 99) * 1000,
            p99_last_ms=flows.pct(last, 99) * 1000,
        )
        self.result["scenarios"]["soak"] = result
        if as_checkout:
            self.result["scenarios"]["checkout_pay"] = {
                k: v for k, v in result.items() if k != "rss_samples"
            } | {"from_soak": True}

    async def prepare_counting(self) -> None:
        """Start, idle until :meth:`run_round_trips`, a second tillpay process (in-process
        worker off, so only requests talk to the database) and a second B1, whose
        PostgreSQL and Redis traffic goes through counting proxies."""
        self.proxies = {"redis": await RttProxy(*REDIS_HOST).start()}
        extra = {"TILLPAY_WORKER_IN_PROCESS": "false"}
        url, b1_env = self.url, dict(self.b1_env)
        if self.kind == "postgres":
            self.proxies["postgres"] = await RttProxy("127.0.0.1", 5432).start()
            port = self.proxies["postgres"].port
            url = self.url.replace(PG_HOST, f"127.0.0.1:{port}")
            b1_env["BENCH_B1_DSN"] = b1_env["BENCH_B1_DSN"].replace(PG_HOST, f"127.0.0.1:{port}")
        extra["TILLPAY_REDIS_URL"] = f"redis://127.0.0.1:{self.proxies['redis'].port}/0"
        self.stack.proxies.extend(self.proxies.values())
        env = self.stack.tillpay_env(url, free_port(), **extra)
        names = (f"tillpay-{self.kind}-counting", f"b1-{self.kind}-counting")
        self.counting, self.counting_b1 = await asyncio.gather(
            self.stack.start_tillpay(names[0], env),
            self.stack.start_baseline(names[1], self.b1_app, {**env, **b1_env}),
        )

    async def run_round_trips(self) -> None:
        """Sequential requests through the counting proxies, then divide."""
        say(f"{self.kind}: counting database and Redis round trips")
        proxies = self.proxies
        try:
            wanted = [s for s in self.scenarios if self.plan.wants(s.name)]
            counts = await count_round_trips(
                self.counting, proxies, wanted, self.flow, self.buyers[0],
                requests=self.plan.rtt_requests,
                flows=self.plan.rtt_flows if self.plan.wants("checkout_pay") else 0,
            )  # fmt: skip
            b1_counts = await count_round_trips(
                self.counting_b1, proxies, wanted[:1], None, self.buyers[0],
                requests=self.plan.rtt_requests, flows=0,
            )  # fmt: skip
        finally:
            await self.stack.stop_all([self.counting.process, self.counting_b1.process])
            for proxy in proxies.values():
                await proxy.close()
        self.result["round_trips"] = {"tillpay": counts, "B1": b1_counts}
        for name, entry in self.result["scenarios"].items():
            if "summary" in entry:
                entry["round_trips"] = {
                    "tillpay": counts.get(name, {}),
                    "B1": next(iter(b1_counts.values()), {}),
                    "B0": {"postgres": 0.0, "redis": 0.0},
                }

    def tables(self) -> None:
        scenarios = self.result["scenarios"]
        for name in ("catalog", "order_read", "me"):
            if name in scenarios:
                self.show(report.single_table(f"{name} on {self.kind}", scenarios[name]))
        if "checkout_pay" in scenarios:
            rtt = self.result.get("round_trips", {}).get("tillpay", {}).get("checkout_pay")
            entry = scenarios["checkout_pay"]
            title = f"checkout_pay on {self.kind}"
            if "from_soak" in entry:
                title += " (the soak's flows)"
            self.show(report.checkout_table(title, entry, rtt))
        if "login_storm" in scenarios:
            self.show(report.storm_table(scenarios["login_storm"]))
        if "webhook" in scenarios:
            self.show(report.webhook_table(scenarios["webhook"]))
        if "soak" in scenarios:
            self.show(report.soak_table(scenarios["soak"]))
