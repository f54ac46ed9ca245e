"""The processes a benchmark run starts, and everything it must clean up afterwards.

One :class:`Stack` owns a temporary directory, a PostgreSQL database of its own
(``tillpay_bench_<random>``), a Redis key prefix of its own, and every child process;
:meth:`Stack.close` stops the processes, drops the database and deletes only the keys
under its prefix, also after an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def tillpay_src() -> str:
    """Where the served tillpay comes from: this checkout, or ``--tillpay-src``."""
    return os.environ.get("BENCH_TILLPAY_SRC") or str(ROOT / "src")


PYTHON = sys.executable
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_HOST = "127.0.0.1:5432"
REDIS_HOST = ("127.0.0.1", 6379)
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: What the benchmark profile is, printed in the header of every report.
PROFILE = (
    "TILLPAY_ENVIRONMENT=development with production values made explicit: JSON access "
    "log at INFO to a file, perimeter on (allowed hosts, body limits, security headers), "
    "Redis-backed rate limits ENABLED and fail-closed (global 100000000/minute, every "
    "policy 1000000/minute), production Argon2 cost, docs off, metrics on behind a token. "
    "Not TILLPAY_ENVIRONMENT=production because production refuses, without an override, "
    "the sandbox payment provider (needed by checkout_pay, webhook and soak) and SQLite "
    "(needed by the SQLite comparison), and requires an SMTP server and https:// URLs; "
    "the environment value itself changes nothing else on the request path."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (from /proc/<pid>/stat), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mib(self.pid)


@dataclass
class Stack:
    """Everything one run owns."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tillpay-bench-")))
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    #: Counting proxies (bench.rtt_proxy.RttProxy), closed by :meth:`close_proxies`.
    proxies: list[Any] = field(default_factory=list)
    #: Shared by every tillpay process of the run (tokens, sandbox signatures).
    secret_key: str = field(default_factory=lambda: "bench-" + secrets.token_hex(24))
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def redis_prefix(self) -> str:
        return f"tillpay_bench_{self.token}"

    # --- PostgreSQL ---------------------------------------------------------------------

    async def create_database(self) -> str:
        import asyncpg

        name = f"tillpay_bench_{self.token}"
        connection = await asyncpg.connect(PG_ADMIN)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        self.databases.append(name)
        return name

    async def drop_databases(self) -> None:
        import asyncpg

        if not self.databases:
            return
        connection = await asyncpg.connect(PG_ADMIN)
        try:
            for name in self.databases:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        self.databases.clear()

    # --- Redis --------------------------------------------------------------------------

    async def delete_redis_keys(self) -> int:
        from redis.asyncio import Redis

        client = Redis(host=REDIS_HOST[0], port=REDIS_HOST[1])
        deleted = 0
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{self.redis_prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await client.delete(*batch)
                    batch.clear()
            if batch:
                deleted += await client.delete(*batch)
        finally:
            await client.aclose()
        return deleted

    # --- tillpay ------------------------------------------------------------------------

    def tillpay_env(self, database_url: str, port: int, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILLPAY_")}
        policies = dict.fromkeys(("auth", "payments", "webhooks"), "1000000/minute")
        policies["account_mail"] = "100000/hour"
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(
                    p for p in (tillpay_src(), str(ROOT), env.get("PYTHONPATH", "")) if p
                ),
                "TILLPAY_ENVIRONMENT": "development",
                "TILLPAY_HOST": "127.0.0.1",
                "TILLPAY_PORT": str(port),
                "TILLPAY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "TILLPAY_DATA_DIR": str(self.workdir),
                "TILLPAY_DATABASE_URL": database_url,
                "TILLPAY_SECRET_KEY": self.secret_key,
                "TILLPAY_REDIS_URL": f"redis://{REDIS_HOST[0]}:{REDIS_HOST[1]}/0",
                "TILLPAY_REDIS_KEY_PREFIX": self.redis_prefix,
                "TILLPAY_RATELIMIT_ENABLED": "true",
                "TILLPAY_RATELIMIT_FAIL_OPEN": "false",
                "TILLPAY_RATELIMIT_GLOBAL": "100000000/minute",
                "TILLPAY_RATELIMIT_POLICIES": _json(policies),
                "TILLPAY_LOG_LEVEL": "INFO",
                "TILLPAY_LOG_JSON": "true",
                "TILLPAY_DOCS_ENABLED": "false",
                "TILLPAY_METRICS_ENABLED": "true",
                "TILLPAY_METRICS_TOKEN": self.metrics_token,
                "TILLPAY_SANDBOX_ENABLED": "true",
                "TILLPAY_WORKER_IN_PROCESS": "true",
                # Tokens must verify in every process of the run (the default is the URL).
                "TILLPAY_JWT_ISSUER": "https://tillpay-bench.invalid",
                # The longest lifetime allowed: the seeded sign-ins must outlast the run.
                "TILLPAY_ACCESS_TOKEN_TTL_SECONDS": "3600",
            }
        )
        env.update(extra)
        return env

    def migrate(self, env: dict[str, str]) -> None:
        subprocess.run(  # noqa: S603 - fixed argv
            [PYTHON, "-m", "tillpay.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[Path, int]:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed argv built by the harness
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return log, len(self.processes) - 1

    async def start_tillpay(self, name: str, env: dict[str, str]) -> Server:
        log, index = self.spawn(name, [PYTHON, "-m", "tillpay.cli", "serve"], env)
        server = Server(name, self.processes[index], f"http://127.0.0.1:{env['TILLPAY_PORT']}", log)
        await wait_ready(server, "/healthz")
        return server

    def start_worker(self, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        _, index = self.spawn(name, [PYTHON, "-m", "tillpay.cli", "worker"], env)
        return self.processes[index]

    async def start_baseline(self, name: str, app: str, env: dict[str, str]) -> Server:
        """A baseline app served like tillpay: uvicorn, one process, same loop/http
        implementation (uvicorn's auto choice), no access log, no server header."""
        port = free_port()
        argv = [
            PYTHON,
            "-m",
            "uvicorn",
            f"bench.baseline_app:{app}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--no-proxy-headers",
            "--no-server-header",
            "--log-level",
            "warning",
        ]
        log, index = self.spawn(name, argv, env)
        server = Server(name, self.processes[index], f"http://127.0.0.1:{port}", log)
        await wait_ready(server, "/healthz")
        return server

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process in self.processes:
            self.processes.remove(process)

    async def close_proxies(self) -> None:
        for proxy in self.proxies:
            await proxy.close()
        self.proxies.clear()

    async def stop_all(self, processes: list[subprocess.Popen[bytes]]) -> None:
        """SIGTERM all at once, then wait for each (in a thread: the loop keeps running)."""
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(asyncio.to_thread(self.stop, p) for p in processes))

    async def close(self) -> list[str]:
        """Stop everything, drop the database, delete the Redis keys; returns notes."""
        notes: list[str] = []
        await self.stop_all(list(reversed(self.processes)))
        try:
            await self.drop_databases()
        except Exception as exc:  # noqa: BLE001 - report and keep cleaning
            notes.append(f"could not drop the bench database: {exc}")
        try:
            notes.append(f"deleted {await self.delete_redis_keys()} Redis keys")
        except Exception as exc:  # noqa: BLE001
            notes.append(f"could not delete the Redis keys: {exc}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        return notes


def _json(value: object) -> str:
    import json

    return json.dumps(value)


async def wait_ready(server: Server, path: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(headers={"host": "localhost"}) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                tail = server.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{server.name} exited ({server.process.returncode}):\n{tail}")
            try:
                if (await client.get(server.base + path)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.name} did not become ready at {server.base}")
