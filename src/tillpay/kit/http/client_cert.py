"""The verified client certificate of a request, for authorization decisions."""

from __future__ import annotations

from functools import lru_cache

from cryptography import x509
from starlette.requests import HTTPConnection


def client_certificate_subject(request: HTTPConnection) -> str | None:
    """The subject (RFC 4514) of the client certificate that the TLS handshake verified,
    or None (plain HTTP, or TLS without a client certificate).

    Read from the ASGI TLS extension only, which the server fills from the handshake
    (``kit/http/tls.py``); a proxy's forwarding header never counts: whoever can reach
    the port could write one.
    """
    extensions = request.scope.get("extensions") or {}
    tls = extensions.get("tls")
    if not tls:
        return None
    name = tls.get("client_cert_name")
    if isinstance(name, str) and name:
        return name
    # Servers implementing the spec may give the chain without the name.
    chain = tls.get("client_cert_chain") or ()
    return _subject(chain[0]) if chain else None


@lru_cache(maxsize=256)
def _subject(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode("ascii")).subject.rfc4514_string()
