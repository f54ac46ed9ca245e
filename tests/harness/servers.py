"""Real servers for tests: an ASGI app served by uvicorn in the test's event loop, and
``tillpay serve`` processes against the test's database."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import REDIS_TEST_PREFIX, SESSION_SECRET

SERVER_START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port in this event loop."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(100):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "the provider emulator did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


@dataclass
class Tillpay:
    """``tillpay serve`` processes against the test's database."""

    env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def start(self) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {**self.env, "TILLPAY_PORT": str(port)}
        log = self.log_dir / f"server-{len(self.processes)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                [sys.executable, "-m", "tillpay.cli", "serve"],
                cwd=self.log_dir,  # no stray .env file
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = asyncio.get_running_loop().time() + SERVER_START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as probe:
            while asyncio.get_running_loop().time() < deadline:
                if process.poll() is not None:
                    pytest.fail(f"tillpay exited:\n{log.read_text()[-4000:]}", pytrace=False)
                with suppress(httpx.TransportError):
                    if (await probe.get(f"{base}/healthz")).status_code == 200:
                        return process, base
                await asyncio.sleep(0.2)
        pytest.fail(f"tillpay did not become healthy:\n{log.read_text()[-4000:]}", pytrace=False)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


def server_env(app: Any, provider_base: str, data_dir: Path) -> dict[str, str]:
    settings = app.state.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLPAY_")}
    env.update(
        TILLPAY_HOST="127.0.0.1",
        TILLPAY_ENVIRONMENT="test",
        TILLPAY_DATABASE_URL=settings.database_url.get_secret_value(),
        TILLPAY_REDIS_URL=settings.redis_url.get_secret_value(),
        TILLPAY_REDIS_KEY_PREFIX=REDIS_TEST_PREFIX,
        # The in-process app's secret and issuer: its signing keys and tokens work here.
        TILLPAY_SECRET_KEY=SESSION_SECRET,
        TILLPAY_PUBLIC_BASE_URL=settings.public_base_url,
        TILLPAY_SANDBOX_API_BASE=provider_base,
        TILLPAY_PROVIDER_TIMEOUT_SECONDS="60",
        TILLPAY_WORKER_IN_PROCESS="false",
        TILLPAY_RATELIMIT_GLOBAL="100000/minute",
        TILLPAY_RATELIMIT_POLICIES=(
            '{"auth":"10000/minute","payments":"10000/minute","webhooks":"10000/minute"}'
        ),
        TILLPAY_DATA_DIR=str(data_dir),
    )
    return env
