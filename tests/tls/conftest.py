"""A PKI for the TLS tests: the development CA and its server and client certificates,
a client certificate from another CA, and an expired one from the right CA."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.webhooks.conftest import receiver
from tillpay import cli
from tillpay.kit import certs
from tillpay.settings import Settings

__all__ = ["Pki", "receiver", "serving"]


@asynccontextmanager
async def serving(app: Any, settings: Settings, **options: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn as `tillpay serve` serves it (TLS options from
    ``settings``); yields its https base URL, stops the server on exit."""
    config = uvicorn.Config(app, **{**cli.uvicorn_options(settings), **options})
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
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


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name


def _save(directory: Path, stem: str, issued: certs.Issued) -> None:
    (directory / f"{stem}.pem").write_bytes(certs.certificate_pem(issued.certificate))
    (directory / f"{stem}-key.pem").write_bytes(certs.private_key_pem(issued.key))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    certs.write_dev_certificates(directory, days=30)
    other_ca = certs.make_ca("another CA", organization="elsewhere")
    _save(directory, "stranger", certs.make_leaf(other_ca, "stranger", client=True))
    key = load_pem_private_key((directory / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = certs.Issued(x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes()), key)
    past = datetime.now(UTC) - timedelta(days=10)
    _save(
        directory, "expired", certs.make_leaf(ca, "expired", client=True, days=1, not_before=past)
    )
    return Pki(directory)
