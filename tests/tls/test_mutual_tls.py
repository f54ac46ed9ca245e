"""Mutual TLS on a real server: the options `tillpay serve` gives uvicorn, serving a tiny
app that reports `client_certificate_subject`, and `tillpay serve` itself."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import tillpay
from tests.conftest import SESSION_SECRET, _base_settings, _run_sync
from tests.harness.servers import free_port
from tests.tls.conftest import Pki
from tillpay import cli, migrate
from tillpay.kit.http.client_cert import client_certificate_subject

CLIENT_SUBJECT = "CN=tillpay-dev-client,O=tillpay development"
# TLS 1.3 sends the client certificate after the server's Finished: the refusal reaches
# the client as a closed connection, on connect or on the first read.
REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)


async def _whoami(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(client_certificate_subject(request)))


async def _whoami_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(str(client_certificate_subject(websocket)))
    await websocket.close()


APP = Starlette(routes=[Route("/whoami", _whoami), WebSocketRoute("/whoami", _whoami_ws)])


def _client_context(pki: Pki, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if cert is not None:
        context.load_cert_chain(pki.path(f"{cert}.pem"), pki.path(f"{cert}-key.pem"))
    return context


@pytest.fixture(scope="module")
async def base(pki: Pki) -> AsyncIterator[str]:
    """The tiny app behind the TLS options of `tillpay serve` (mutual TLS on)."""
    settings = _base_settings(
        host="127.0.0.1",
        port=free_port(),
        tls_cert_file=pki.path("server.pem"),
        tls_key_file=pki.path("server-key.pem"),
        tls_client_ca_file=pki.path("ca.pem"),
    )
    config = uvicorn.Config(APP, **{**cli.uvicorn_options(settings), "lifespan": "off"})  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    try:
        yield f"https://localhost:{settings.port}"
    finally:
        server.should_exit = True
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


async def _get(base: str, context: ssl.SSLContext, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(verify=context, timeout=5) as client:
        return await client.get(f"{base}/whoami", headers=headers)


async def test_a_client_certificate_from_the_ca_is_served_and_its_subject_seen(
    base: str, pki: Pki
) -> None:
    # A forwarding header is no certificate: the subject comes from the handshake only.
    response = await _get(base, _client_context(pki, "client"), x_ssl_client_s_dn="CN=admin")
    assert response.status_code == 200
    assert response.text == CLIENT_SUBJECT


async def test_a_websocket_sees_the_subject_too(base: str, pki: Pki) -> None:
    uri = base.replace("https://", "wss://") + "/whoami"
    async with websockets.connect(uri, ssl=_client_context(pki, "client")) as connection:
        assert await connection.recv() == CLIENT_SUBJECT


@pytest.mark.parametrize(
    "cert",
    [None, "stranger", "expired", "server"],
    ids=["no certificate", "another CA", "expired", "server certificate (no clientAuth)"],
)
async def test_the_handshake_refuses_clients_without_a_valid_certificate(
    base: str, pki: Pki, cert: str | None
) -> None:
    with pytest.raises(REFUSED):
        await _get(base, _client_context(pki, cert))


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


@pytest.mark.parametrize("version", ["TLSv1_1", "TLSv1_2"])
async def test_tls_below_1_2_is_refused(base: str, pki: Pki, version: str) -> None:
    context = _client_context(pki, "client")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1
        context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    # Let this client offer TLS 1.1 at all, so that the refusal is the server's.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    port = int(base.rsplit(":", 1)[1])
    if version == "TLSv1_2":
        assert await asyncio.to_thread(_handshake, port, context) == "TLSv1.2"
        return
    with pytest.raises(ssl.SSLError) as refused:
        await asyncio.to_thread(_handshake, port, context)
    assert refused.value.reason != "NO_PROTOCOLS_AVAILABLE"  # sent, then refused


def test_tillpay_serve_requires_client_certificates(tmp_path: Path, pki: Pki) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}"
    _run_sync(migrate.upgrade, _base_settings(database_url=url))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLPAY_")}
    # This checkout's package, whatever the relative PYTHONPATH resolves to from tmp_path.
    source = str(Path(tillpay.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
    env.update(
        TILLPAY_DATABASE_URL=url,
        TILLPAY_SECRET_KEY=SESSION_SECRET,
        TILLPAY_ENVIRONMENT="development",
        TILLPAY_DATA_DIR=str(tmp_path),
        TILLPAY_WORKER_IN_PROCESS="false",
        TILLPAY_TLS_CERT_FILE=str(pki.path("server.pem")),
        TILLPAY_TLS_KEY_FILE=str(pki.path("server-key.pem")),
        TILLPAY_TLS_CLIENT_CA_FILE=str(pki.path("ca.pem")),
    )
    command = [sys.executable, "-m", "tillpay.cli", "serve", "--host", "127.0.0.1"]
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [*command, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    healthz = f"https://localhost:{port}/healthz"
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith(f"tillpay: serving on https://127.0.0.1:{port}")
        assert "client certificates required" in first_line
        deadline = time.monotonic() + 60
        status = None
        with httpx.Client(verify=_client_context(pki, "client"), timeout=2) as client:
            while status is None and time.monotonic() < deadline:
                try:
                    status = client.get(healthz).status_code
                except httpx.ConnectError:
                    time.sleep(0.1)
        assert status == 200
        with (
            pytest.raises(REFUSED),
            httpx.Client(verify=_client_context(pki, None), timeout=2) as client,
        ):
            client.get(healthz)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
