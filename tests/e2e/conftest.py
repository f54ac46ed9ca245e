"""Fixtures of the browser tests (``tests/e2e/harness.py`` holds the harness): one
``tillpay serve`` process, shop client and Chromium per module, a fresh browser context
per test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MISSING,
    Server,
    Shop,
    Visit,
    free_port,
    server_env,
    stop_process,
    wait_healthy,
)
from tests.webhooks import receiver as receiver_module
from tests.webhooks.receiver import Receiver

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture(scope="module")
def server_settings() -> dict[str, str]:
    """Extra ``TILLPAY_*`` variables for this module's server (none). A module needing
    some overrides this fixture (module scope), e.g. to let webhooks reach a local
    receiver."""
    return {}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_settings: dict[str, str]
) -> Iterator[Server]:
    """A migrated, running ``tillpay serve`` process; always terminated afterwards."""
    data_dir = tmp_path_factory.mktemp("tillpay-e2e")
    database = data_dir / "db.sqlite"
    port = free_port()
    env = server_env(port, data_dir, database, server_settings)
    command = [sys.executable, "-m", "tillpay.cli"]
    # cwd is the temp dir so that no stray .env file is read.
    migrated = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [*command, "migrate"], cwd=data_dir, env=env, capture_output=True, check=False
    )
    assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")
    log = data_dir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [*command, "serve"], cwd=data_dir, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_healthy(process, env["TILLPAY_PUBLIC_BASE_URL"], log)
        yield Server(env["TILLPAY_PUBLIC_BASE_URL"], data_dir, database, env)
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
async def shop(server: Server) -> AsyncIterator[Shop]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        yield Shop(server, http)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, with a fresh temporary profile (Playwright's default)."""
    if MISSING is not None:
        pytest.fail(f"the browser test is mandatory on CI: {MISSING}", pytrace=False)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def visit(browser: Browser) -> AsyncIterator[Visit]:
    """A new browser context whose every request URL and console error is recorded."""
    context = await browser.new_context(viewport={"width": 800, "height": 700})
    page = await context.new_page()
    visit = Visit(page, [], [])
    page.on("request", lambda request: visit.requests.append(request.url))
    page.on(
        "console",
        lambda message: (
            visit.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: visit.console_errors.append(str(error)))
    try:
        yield visit
    finally:
        await context.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A merchant's webhook receiver on 127.0.0.1 (records every signed request)."""
    running = receiver_module.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()
