"""HTTP benchmark: tillpay against a bare FastAPI baseline, in the same run.

    .venv/bin/python bench/http_bench.py [--seconds 10] [--concurrency 32] [--database URL]

Starts both apps with uvicorn (one worker each) on loopback ports, drives them with an
async httpx load generator, and prints requests/s, p50/p99 latency and server RSS side by
side. Figures are for comparison within one run on one machine, not absolute claims.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - fixed argv built above
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(base + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{base} did not start")


async def load(
    base: str, path: str, headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start_at = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - start_at)
                if response.status_code != 200:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, errors


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def tillpay_token(base: str) -> str:
    """Register and sign in a benchmark user (also warms the app)."""
    email = f"bench.{secrets.token_hex(4)}@example.com"
    password = "benchmark passphrase " + secrets.token_hex(8)
    async with httpx.AsyncClient(base_url=base, headers={"host": "localhost"}) as client:
        registered = await client.post(
            "/v1/auth/register", json={"email": email, "password": password}
        )
        registered.raise_for_status()
        response = await client.post("/v1/auth/login", json={"email": email, "password": password})
        response.raise_for_status()
        return str(response.json()["access_token"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database", default=None, help="TILLPAY_DATABASE_URL (default SQLite)")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tillpay-bench-"))
    env = dict(os.environ)
    env.update(
        {
            "TILLPAY_ENVIRONMENT": "test",
            "TILLPAY_DATA_DIR": str(workdir),
            "TILLPAY_DATABASE_URL": options.database
            or f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            "TILLPAY_SECRET_KEY": secrets.token_urlsafe(48),
            "TILLPAY_RATELIMIT_GLOBAL": "100000000/minute",
            "TILLPAY_RATELIMIT_POLICIES": '{"auth": "100000/minute"}',
            "TILLPAY_LOG_LEVEL": "WARNING",
        }
    )
    subprocess.run(  # noqa: S603, ASYNC221 - one-off set-up before any load
        [PYTHON, "-m", "tillpay.cli", "migrate"], cwd=ROOT, env=env, check=True
    )
    tillpay_port, baseline_port = free_port(), free_port()
    env["TILLPAY_PORT"] = str(tillpay_port)
    servers = {
        "tillpay": start([PYTHON, "-m", "tillpay.cli", "serve"], env),
        "baseline": start(
            [
                PYTHON,
                "-m",
                "uvicorn",
                "bench.baseline_app:app",
                "--port",
                str(baseline_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env,
        ),
    }
    bases = {
        "tillpay": f"http://127.0.0.1:{tillpay_port}",
        "baseline": f"http://127.0.0.1:{baseline_port}",
    }
    try:
        for base in bases.values():
            await wait_ready(base)
        token = await tillpay_token(bases["tillpay"])
        scenarios = [
            ("GET /healthz", "/healthz", {}),
            ("GET /v1/me (JWT + session check)", "/v1/me", {"Authorization": f"Bearer {token}"}),
        ]
        print(f"{options.seconds:.0f} s per scenario, {options.concurrency} concurrent clients")
        header = f"{'scenario':36} {'app':9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS MiB':>8}"
        print(header)
        print("-" * len(header))
        for title, path, headers in scenarios:
            for name in ("baseline", "tillpay"):
                count, latencies, errors = await load(
                    bases[name],
                    path,
                    {"host": "localhost", **headers},
                    options.seconds,
                    options.concurrency,
                )
                print(
                    f"{title:36} {name:9} {count / options.seconds:9.0f} "
                    f"{pct(latencies, 50):8.2f} {pct(latencies, 99):8.2f} {errors:7d} "
                    f"{rss_mib(servers[name].pid):8.1f}"
                )
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGTERM)
        for server in servers.values():
            server.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
