"""Single-request scenarios driven by wrk, interleaved with their baselines, and the
round-trip counting phase."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.rtt_proxy import RttProxy
from bench.seed import Customer, Seeded
from bench.servers import Server

#: The wrk script: rotates (path, Authorization) pairs and prints its figures as JSON.
LUA = """
local entries = {%(entries)s}
local i = 0
request = function()
  i = i %% #entries + 1
  local e = entries[i]
  local headers = { ["Host"] = "localhost" }
  if e[2] ~= "" then headers["Authorization"] = e[2] end
  return wrk.format("GET", e[1], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p95_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class Scenario:
    name: str
    #: (path, bearer token or "") pairs, rotated by the wrk script.
    entries: list[tuple[str, str]]

    def lua(self) -> str:
        rows = ",".join(
            "{%s,%s}" % (json.dumps(path), json.dumps(f"Bearer {t}" if t else ""))  # noqa: UP031
            for path, t in self.entries
        )
        return LUA % {"entries": rows}


def single_scenarios(seeded: Seeded) -> list[Scenario]:
    customers = [c for c in seeded.customers if c.token and c.order_ids]
    return [
        Scenario("catalog", [("/v1/products?limit=20", "")]),
        Scenario("order_read", [(f"/v1/orders/{c.order_ids[0]}", c.token) for c in customers]),
        Scenario("me", [("/v1/me", c.token) for c in customers]),
    ]


def ensure_wrk() -> str:
    """The wrk binary; installs the Debian package when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    import os

    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("bench: wrk not found; installing it with apt-get", flush=True)
    result = subprocess.run(  # noqa: S603 - fixed argv
        [*prefix, "apt-get", "install", "-y", "wrk"], capture_output=True, text=True, check=False
    )
    found = shutil.which("wrk")
    if result.returncode != 0 or not found:
        raise SystemExit(
            "bench: could not install wrk (`apt-get install -y wrk` "
            f"{'as root' if not prefix else 'with sudo -n'} failed: "
            f"{(result.stderr or result.stdout).strip()[-300:]}); install it and run again"
        )
    return found


async def run_wrk(
    wrk: str, server: Server, script: Path, seconds: float, connections: int
) -> dict[str, Any]:
    """One wrk run against ``server``; adds server CPU per request and RSS."""
    cpu_before = server.cpu()
    process = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        server.base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    cpu_after = server.cpu()
    line = next((x for x in out.decode().splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.decode()[-500:]} {err.decode()[-500:]}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    requests = max(1, raw["requests"])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "non_2xx": raw["status"],
        "socket_errors": errors - raw["status"],
        "cpu_ms_per_req": (cpu_after - cpu_before) * 1000 / requests,
        "rss_mib": server.rss(),
    }


async def interleaved(
    wrk: str,
    scenario: Scenario,
    targets: dict[str, Server],
    workdir: Path,
    *,
    rounds: int,
    seconds: float,
    connections: int,
    once: frozenset[str] = frozenset(),
) -> dict[str, list[dict[str, Any]]]:
    """A B A B …: each round runs every target once (``once`` targets only in round 1)."""
    script = workdir / f"{scenario.name}.lua"
    script.write_text(scenario.lua())
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for number in range(rounds):
        for name, server in targets.items():
            if number > 0 and name in once:
                continue
            runs[name].append(await run_wrk(wrk, server, script, seconds, connections))
    return runs


async def warm_up(server: Server, scenario: Scenario, count: int = 60) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        for i in range(count):
            path, token = scenario.entries[i % len(scenario.entries)]
            headers = {"host": "localhost"}
            if token:
                headers["authorization"] = f"Bearer {token}"
            await client.get(path, headers=headers)


# --- round trips ----------------------------------------------------------------------------


async def count_round_trips(
    server: Server,
    proxies: dict[str, RttProxy],
    scenarios: list[Scenario],
    flow: Any,
    customer: Customer,
    *,
    requests: int,
    flows: int,
) -> dict[str, dict[str, float]]:
    """Sequential requests through the counting proxies: round trips per request (and per
    checkout_pay flow, when ``flow`` is given)."""
    result: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        for scenario in scenarios:
            await warm_up(server, scenario, 5)
            before = {k: p.round_trips for k, p in proxies.items()}
            for i in range(requests):
                path, token = scenario.entries[i % len(scenario.entries)]
                headers = {"host": "localhost"}
                if token:
                    headers["authorization"] = f"Bearer {token}"
                response = await client.get(path, headers=headers)
                response.raise_for_status()
            result[scenario.name] = {
                k: (p.round_trips - before[k]) / requests for k, p in proxies.items()
            }
        if flow is not None and flows:
            await flow(client, customer, poll=False)  # warm-up
            before = {k: p.round_trips for k, p in proxies.items()}
            for _ in range(flows):
                await flow(client, customer, poll=False)
            result["checkout_pay"] = {
                k: (p.round_trips - before[k]) / flows for k, p in proxies.items()
            }
    return result
