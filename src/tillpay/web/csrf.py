"""CSRF protection for every state-changing form.

A form carries ``csrf_token`` (``{{ csrf_field() }}`` in a template): an HMAC, under a key
derived for this purpose only, of what binds the form to one browser:

- signed in (the console): the AuthSession id of the cookie session, so a token of one
  session is worthless in another and dies with it;
- anonymous (the sign-in form, the shop): a random value in the ``__Host-tillpay_csrf``
  cookie (signed double submit: the token proves knowledge of the cookie, which another
  site can neither read nor, being ``__Host-``, set).

On top, a POST is refused when the browser says it comes from another site
(``Sec-Fetch-Site: cross-site``) or its ``Origin`` is not this origin. Refusals raise
:class:`CsrfRefused` (a styled 403 page).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from fastapi import Request

from tillpay.kit.crypto import derive_key
from tillpay.kit.errors import Forbidden
from tillpay.kit.logging import get_logger

log = get_logger("tillpay.web.csrf")

ANON_COOKIE: Final = "__Host-tillpay_csrf"
FIELD: Final = "csrf_token"


class CsrfRefused(Forbidden):
    code, title = "csrf_refused", "This form has expired"

    def __init__(self) -> None:
        super().__init__(
            "The form could not be verified (it may have expired, or come from another "
            "site). Go back, reload the page and try again."
        )


def _key(request: Request) -> bytes:
    cached: bytes | None = getattr(request.app.state, "web_csrf_key", None)
    if cached is None:
        secret = request.app.state.settings.secret_key.get_secret_value().encode()
        cached = request.app.state.web_csrf_key = derive_key(secret, "web-csrf")
    return cached


def _sign(request: Request, binding: str) -> str:
    return hmac.new(_key(request), binding.encode(), hashlib.sha256).hexdigest()


def bind_session(request: Request, session_id: str) -> None:
    """Bind this request's forms to a signed-in session (the session dependency calls it)."""
    request.state.csrf_binding = f"session:{session_id}"


def bind_anonymous(request: Request) -> None:
    """Bind this request's forms to the browser's anonymous CSRF cookie, issuing one when
    it has none (pages with forms for people not signed in call this before rendering)."""
    from tillpay.web.templating import queue_cookie

    value = request.cookies.get(ANON_COOKIE, "")
    if not _plausible(value):
        value = secrets.token_urlsafe(32)
        queue_cookie(request, ANON_COOKIE, value, max_age=None)
    request.state.csrf_binding = f"anon:{value}"


def _plausible(value: str) -> bool:
    return 32 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def token_for(request: Request) -> str | None:
    """The token this request's forms carry (None: no binding, so no form may be shown)."""
    binding: str | None = getattr(request.state, "csrf_binding", None)
    return None if binding is None else _sign(request, binding)


def _same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # older browsers send none on same-origin posts; the token decides
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return hmac.compare_digest(origin.lower(), own.lower())


async def _verify(request: Request, binding: str | None) -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = ""
    if binding is not None and _same_origin(request):
        form = await request.form()
        value = form.get(FIELD)
        sent = value if isinstance(value, str) else ""
    if not sent or binding is None or not hmac.compare_digest(sent, _sign(request, binding)):
        log.warning(
            "web.csrf_refused",
            path=request.url.path,
            fetch_site=request.headers.get("sec-fetch-site"),
            origin=request.headers.get("origin"),
            bound=binding is not None,
        )
        raise CsrfRefused()


async def require_session_csrf(request: Request) -> None:
    """For signed-in POST routes, after the session dependency has bound the request."""
    binding: str | None = getattr(request.state, "csrf_binding", None)
    await _verify(request, binding if binding and binding.startswith("session:") else None)


async def require_anonymous_csrf(request: Request) -> None:
    """For POST routes of people not signed in (sign-in, the shop's anonymous forms)."""
    value = request.cookies.get(ANON_COOKIE, "")
    binding = f"anon:{value}" if _plausible(value) else None
    await _verify(request, binding)
    request.state.csrf_binding = binding
