"""TLS terminated by this process: the server context and the ASGI TLS extension.

uvicorn does not implement the ASGI TLS extension (its pull requests are unmerged), so
:func:`with_tls_extension` adds ``scope["extensions"]["tls"]`` (extension version 0.2) to
every request of a TLS connection, read once per connection from the transport's
``ssl_object`` (``tls_uvicorn.py`` hooks it into uvicorn). Only what the handshake
verified gets there: no header is ever read.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from cryptography import x509

ASGIApp = Any
StrPath = str | os.PathLike[str]

#: Integer versions as the extension spells them (the TLS record version numbers).
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _no_password() -> str:
    return ""


def server_context(
    cert_file: StrPath, key_file: StrPath, client_ca_file: StrPath | None = None
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, and with ``client_ca_file`` a client
    certificate signed by that CA is required (the handshake fails without one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Python's default already is 1.2; set here so that no OpenSSL policy file lowers it.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    # An encrypted key fails here instead of OpenSSL prompting on the terminal.
    context.load_cert_chain(cert_file, key_file, password=_no_password)
    if client_ca_file is not None:
        context.load_verify_locations(cafile=client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, object]:
    """The ASGI TLS extension's entry for a connection (``server_cert`` and
    ``cipher_suite`` stay None: Python's ssl module does not expose them)."""
    der = ssl_object.getpeercert(binary_form=True)
    name = None
    chain: list[str] = []
    if der:
        chain.append(ssl.DER_cert_to_PEM_cert(der))
        name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        # A certificate that fails verification ends the handshake before any request.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


def with_tls_extension(app: ASGIApp, transport: Any) -> ASGIApp:
    """``app`` adding the connection's TLS extension to each scope (``app`` itself when
    the connection is plain TCP: the extension is then absent, as the spec says)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return app
    extension = tls_extension(ssl_object)

    async def app_with_tls(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": extension}
        await app(scope, receive, send)

    return app_with_tls
