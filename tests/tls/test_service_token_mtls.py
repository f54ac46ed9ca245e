"""Service tokens bound to a client certificate, on a real TLS server: the tillpay app
behind the options `tillpay serve` gives uvicorn (mutual TLS), the issuer configured with
the subject its requests must present."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi import FastAPI

from tests.conftest import _base_settings, _run_sync
from tests.credentials.service_token_helpers import AUDIENCE, ISSUER, SigningKey, bearer, mint
from tests.harness.servers import free_port
from tests.tls.conftest import Pki, serving
from tests.tls.test_mutual_tls import CLIENT_SUBJECT
from tillpay import migrate
from tillpay.app import create_app
from tillpay.kit import certs

KEY = SigningKey.new("shop")
ROUTE = "/v1/admin/event-types"  # needs webhooks:manage


@dataclass(frozen=True)
class Served:
    base: str
    app: FastAPI


def _other_client(pki: Pki, directory: Path) -> tuple[Path, Path]:
    """A client certificate from the right CA, for another subject."""
    key = load_pem_private_key(pki.path("ca-key.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = certs.Issued(x509.load_pem_x509_certificate(pki.path("ca.pem").read_bytes()), key)
    issued = certs.make_leaf(ca, "another-shop", client=True)
    cert, private = directory / "other.pem", directory / "other-key.pem"
    cert.write_bytes(certs.certificate_pem(issued.certificate))
    private.write_bytes(certs.private_key_pem(issued.key))
    return cert, private


@pytest.fixture
async def served(pki: Pki, tmp_path: Path) -> AsyncIterator[Served]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mtls.db'}"
    _run_sync(migrate.upgrade, _base_settings(database_url=url))
    settings = _base_settings(
        database_url=url,
        host="127.0.0.1",
        port=free_port(),
        tls_cert_file=pki.path("server.pem"),
        tls_key_file=pki.path("server-key.pem"),
        tls_client_ca_file=pki.path("ca.pem"),
        service_token_issuers=[
            {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "public_key_pem": KEY.public_pem(),
                "algorithms": ["ES256"],
                "client_cert_subject": CLIENT_SUBJECT,
            }
        ],
    )
    app = create_app(settings)
    async with serving(app, settings) as base:
        yield Served(base, app)


def _context(pki: Pki, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    context.load_cert_chain(cert, key)
    return context


async def test_a_bound_token_needs_the_certificate_it_is_bound_to(
    served: Served, pki: Pki, tmp_path: Path
) -> None:
    right = _context(pki, pki.path("client.pem"), pki.path("client-key.pem"))
    async with httpx.AsyncClient(verify=right, timeout=10) as client:
        response = await client.get(served.base + ROUTE, headers=bearer(mint(KEY)))
        assert response.status_code == 200, response.text
        # A forwarding header names no certificate.
        forged = {**bearer(mint(KEY)), "X-SSL-Client-S-DN": "CN=another-shop"}
        assert (await client.get(served.base + ROUTE, headers=forged)).status_code == 200

    wrong = _context(pki, *_other_client(pki, tmp_path))
    async with httpx.AsyncClient(verify=wrong, timeout=10) as client:
        response = await client.get(served.base + ROUTE, headers=bearer(mint(KEY)))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


async def test_a_bound_token_without_any_certificate_is_refused(served: Served) -> None:
    # The TLS server refuses a client without a certificate at the handshake; the same
    # app reached without TLS (no verified certificate in the request) refuses the token.
    transport = httpx.ASGITransport(app=served.app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.get(ROUTE, headers=bearer(mint(KEY)))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"
