"""The reference nginx configuration (deploy/nginx/tillpay.conf), run as it is in front of
a real ``tillpay serve``: TLS and HTTP/2 at the edge, the client's address (never what the
client claims) reaching tillpay, its own request ids replaced, oversized bodies refused at
the edge as problem+json, and a signed provider webhook passing through byte for byte."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts.helpers import Accounts
from tests.conftest import IN_CI, ClientFactory
from tests.harness.servers import Tillpay, free_port, server_env
from tillpay.kit import signing
from tillpay.kit.certs import write_dev_certificates
from tillpay.sandbox import psp

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "nginx" / "tillpay.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_INSTALLED = Path(NGINX).exists()
HOST = "localhost"
#: The client connects from this loopback address; nginx reaches tillpay from 127.0.0.1.
CLIENT_IP = "127.0.0.2"


def _certificate(directory: Path) -> tuple[Path, Path, Path]:
    """`tillpay certs dev`'s server certificate (localhost, 127.0.0.1): cert, key, CA."""
    write_dev_certificates(directory, days=1)
    return directory / "server.pem", directory / "server-key.pem", directory / "ca.pem"


def _render(upstream: int, https: int, http: int, cert: Path, key: Path) -> str:
    """The reference file with this test's ports, name and certificate: each value it
    replaces must be there, so the test can never run some other configuration."""
    text = CONFIG.read_text()
    for old, new in {
        "server 127.0.0.1:8000 ": f"server 127.0.0.1:{upstream} ",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
        "listen 80;": f"listen 127.0.0.1:{http};",
        "server_name pay.example.com;": f"server_name {HOST};",
        "/etc/ssl/tillpay/fullchain.pem": str(cert),
        "/etc/ssl/tillpay/privkey.pem": str(key),
    }.items():
        assert old in text, f"deploy/nginx/tillpay.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Edge:
    client: httpx.AsyncClient
    base: str
    http_port: int
    https_port: int
    ca: Path
    settings: Any
    accounts: Accounts
    servers: Tillpay


async def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(100):
        if process.poll() is not None:
            output = await asyncio.to_thread(log.read_text)
            pytest.fail(f"nginx exited:\n{output[-3000:]}", pytrace=False)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    pytest.fail("nginx did not listen", pytrace=False)


@pytest.fixture
async def edge(
    backend: str, make_client: ClientFactory, clean_db: None, mail_dir: Path, tmp_path: Path
) -> AsyncIterator[Edge]:
    if backend != "postgres":
        pytest.skip("the API process shares PostgreSQL with the test")
    if not NGINX_INSTALLED:
        if IN_CI:
            pytest.fail("nginx is mandatory on CI (apt-get install nginx)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    cert, key, ca = _certificate(tmp_path)
    https_port, http_port = free_port(), free_port()
    async with make_client() as client:
        env = server_env(client.app, "http://127.0.0.1:9", tmp_path)  # type: ignore[attr-defined]
        env.update(
            TILLPAY_TRUSTED_PROXIES="127.0.0.1",
            TILLPAY_ALLOWED_HOSTS=f"{HOST},127.0.0.1",
        )
        servers = Tillpay(env, tmp_path)
        nginx: subprocess.Popen[bytes] | None = None
        try:
            _, base = await servers.start()
            upstream = int(base.rsplit(":", 1)[1])
            prefix = tmp_path / "nginx"
            (prefix / "logs").mkdir(parents=True)
            (prefix / "tillpay.conf").write_text(
                _render(upstream, https_port, http_port, cert, key)
            )
            # nginx's own main file: what a Debian install's /etc/nginx/nginx.conf gives
            # (events, http), kept inside the test's directory.
            (prefix / "nginx.conf").write_text(
                f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
                "events { worker_connections 256; }\n"
                f"http {{\n access_log {prefix}/logs/access.log;\n"
                f" client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;\n"
                f" fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi;"
                f" scgi_temp_path {prefix}/scgi;\n"
                f" include {prefix}/tillpay.conf;\n}}\n"
            )
            log = prefix / "logs" / "stderr.log"
            with log.open("wb") as output:
                nginx = subprocess.Popen(  # noqa: ASYNC220, S603 - returns at once; fixed argv
                    [
                        NGINX,
                        "-p",
                        str(prefix),
                        "-c",
                        str(prefix / "nginx.conf"),
                        "-g",
                        "daemon off;",
                    ],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            await _wait_for_port(https_port, nginx, log)
            verify = ssl.create_default_context(cafile=str(ca))
            transport = httpx.AsyncHTTPTransport(verify=verify, local_address=CLIENT_IP)
            async with httpx.AsyncClient(
                transport=transport,
                base_url=f"https://127.0.0.1:{https_port}",
                headers={"host": HOST},
                timeout=20,
            ) as through:
                yield Edge(
                    through,
                    f"https://127.0.0.1:{https_port}",
                    http_port,
                    https_port,
                    ca,
                    client.app.state.settings,  # type: ignore[attr-defined]
                    Accounts(client, mail_dir),
                    servers,
                )
        finally:
            if nginx is not None and nginx.poll() is None:
                nginx.terminate()
                nginx.wait(timeout=10)
            servers.stop_all()


async def check_tillpay_sees_the_connecting_address_not_the_one_a_client_claims(
    edge: Edge,
) -> None:
    user = await edge.accounts.user()
    login = await edge.client.post(
        "/v1/auth/login",
        json={"email": user.email, "password": user.password},
        headers={"x-forwarded-for": "6.6.6.6", "x-real-ip": "6.6.6.6"},
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    sessions = await edge.client.get(
        "/v1/auth/sessions", headers={"authorization": f"Bearer {token}"}
    )
    [current] = [s for s in sessions.json() if s["current"]]
    assert current["ip"] == CLIENT_IP


async def check_answers_carry_tillpays_headers_and_no_nginx_version(edge: Edge) -> None:
    response = await edge.client.get("/healthz", headers={"x-request-id": "client-chosen-id"})
    assert response.status_code == 200
    assert response.headers["server"] == "nginx"  # server_tokens off: no version
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    # nginx's id replaced the client's, and tillpay kept it (it trusts this proxy).
    assert response.headers["x-request-id"] != "client-chosen-id"
    assert len(response.headers["x-request-id"]) == 32


def check_tls_offers_http2_and_refuses_tls_1_1(edge: Edge) -> None:
    context = ssl.create_default_context(cafile=str(edge.ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", edge.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(edge.ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # on purpose: the old version
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with (
        socket.create_connection(("127.0.0.1", edge.https_port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        old.wrap_socket(raw, server_hostname=HOST)


async def check_plain_http_is_redirected_to_https(edge: Edge) -> None:
    async with httpx.AsyncClient() as plain:
        response = await plain.get(
            f"http://127.0.0.1:{edge.http_port}/v1/products", headers={"host": HOST}
        )
    assert response.status_code == 301
    assert response.headers["location"] == f"https://{HOST}/v1/products"


async def check_a_body_over_the_edge_limit_is_refused_there_as_problem_json(edge: Edge) -> None:
    response = await edge.client.post(
        "/v1/auth/login", content=b"x" * (600 * 1024), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "payload_too_large"
    assert problem["instance"].startswith("urn:request:")


async def check_a_signed_provider_webhook_passes_through_unchanged(edge: Edge) -> None:
    event = {
        "id": "evt_through_nginx",
        "type": "session.completed",
        "data": {"session": {"id": "sbx_unknown", "reference": "pay_unknown_1"}},
    }
    # Spacing and key order as a provider might send them: the signature covers these
    # exact bytes, so any rewriting on the way would fail it.
    body = json.dumps(event, indent=2).encode()
    signed = {
        psp.SIGNATURE_HEADER: signing.sign(body, psp.webhook_secret(edge.settings)),
        "content-type": "application/json",
    }
    accepted = await edge.client.post("/v1/webhooks/sandbox", content=body, headers=signed)
    tampered = await edge.client.post(
        "/v1/webhooks/sandbox", content=body.replace(b"  ", b" "), headers=signed
    )
    assert accepted.status_code == 200, accepted.text
    assert tampered.status_code == 400


async def check_with_no_api_process_the_edge_answers_503_problem_json(edge: Edge) -> None:
    edge.servers.stop_all()
    response = await edge.client.get("/v1/products")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.json()["code"] == "service_unavailable"


CHECKS = (
    check_answers_carry_tillpays_headers_and_no_nginx_version,
    check_tls_offers_http2_and_refuses_tls_1_1,
    check_plain_http_is_redirected_to_https,
    check_a_body_over_the_edge_limit_is_refused_there_as_problem_json,
    check_a_signed_provider_webhook_passes_through_unchanged,
    check_tillpay_sees_the_connecting_address_not_the_one_a_client_claims,
    # Last: it stops the API process.
    check_with_no_api_process_the_edge_answers_503_problem_json,
)


async def test_the_reference_configuration_in_front_of_tillpay(edge: Edge) -> None:
    """One nginx and one API process for every check (each starts in seconds); the
    checks are the behaviours above, each a function of its own."""
    for check in CHECKS:
        outcome = check(edge)
        if outcome is not None:
            await outcome
