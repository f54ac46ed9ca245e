"""uvicorn serving HTTPS: the options, its context factory and the protocol classes that
put the ASGI TLS extension in the scope (``tls.py``)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from tillpay.kit.http.tls import server_context, with_tls_extension


def uvicorn_context_factory(config: Config, default: object) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: :func:`server_context` from the ``ssl_*`` options
    (a module-level function, so ``--workers`` can pass it to its processes)."""
    assert config.ssl_certfile is not None
    assert config.ssl_keyfile is not None
    return server_context(config.ssl_certfile, config.ssl_keyfile, config.ssl_ca_certs)


def uvicorn_options(
    cert_file: Path, key_file: Path, client_ca_file: Path | None
) -> dict[str, object]:
    """The ``uvicorn.run`` options serving HTTPS with the TLS extension in the scope."""
    options: dict[str, object] = {
        "ssl_certfile": str(cert_file),
        "ssl_keyfile": str(key_file),
        "ssl_context_factory": uvicorn_context_factory,
        "http": HttpProtocol,
        "ws": WebSocketProtocol,
    }
    if client_ca_file is not None:
        options["ssl_ca_certs"] = str(client_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


# The classes uvicorn's "auto" picks when its [standard] extras are installed.
class HttpProtocol(HttpToolsProtocol):
    """httptools HTTP/1.1 with the TLS extension."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.app = with_tls_extension(self.app, transport)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets (sans-I/O) with the TLS extension."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.app = with_tls_extension(self.app, transport)
