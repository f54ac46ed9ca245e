"""Jinja2 pages with a strict, per-request Content-Security-Policy.

:func:`render` is the only way a page leaves tillpay: it draws a fresh nonce, puts it (and
the request's CSRF token, signed-in person and notice) in the template context, and sets
the CSP, ``Cache-Control: no-store`` and any cookie a dependency queued (``queue_cookie``).
Every ``<script>`` must carry ``nonce="{{ csp_nonce }}"``; inline ``style=`` attributes are
refused by the CSP (``style-src 'self'``): style with classes in ``assets/tillpay.css``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from tillpay.kit.money import Money
from tillpay.web import assets, csrf

PAGE_CSP: Final = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

# Notices a redirect may ask the next page to show (``?notice=key``): a fixed set, so no
# text of the query string is ever reflected. Page modules add their own at import.
NOTICES: dict[str, str] = {
    "signed_out": "You have signed out.",
    "reauthenticated": "Identity confirmed. You can continue.",
    "expired": "Your session ended. Sign in again to continue.",
}


def _money(amount: int, currency: str) -> str:
    """``NGN 1,234.50`` from minor units (the currency's exponent decides)."""
    try:
        return Money(amount, currency).format()
    except ValueError:  # an unknown currency code still shows, unformatted
        return f"{currency} {amount}"


@pass_context
def _csrf_field(context: Context) -> Markup:
    """``{{ csrf_field() }}``: the hidden CSRF input every POST form carries."""
    token = context.get("csrf_token")
    if not token:
        raise RuntimeError("a form rendered without a CSRF binding (see web/csrf.py)")
    field: Markup = Markup('<input type="hidden" name="csrf_token" value="%s">') % token
    return field


def _build() -> Environment:
    env = Environment(
        loader=PackageLoader("tillpay.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["asset"] = assets.url
    env.globals["csrf_field"] = _csrf_field
    env.filters["money"] = _money
    return env


ENV: Final = _build()
"""Built once at import; page modules may add globals/filters at their import."""


@dataclass
class Cookie:
    name: str
    value: str
    max_age: int | None  # None: a session cookie; 0: delete it
    samesite: Literal["strict", "lax"] = "strict"


def queue_cookie(
    request: Request,
    name: str,
    value: str,
    *,
    max_age: int | None,
    samesite: Literal["strict", "lax"] = "strict",
) -> None:
    """Have the response of this request set (``max_age=0``: delete) a ``__Host-`` cookie.
    ``SameSite=Strict`` unless a caller needs ``lax`` (the shop's session, docs/console.md).

    Dependencies cannot reach a Response a route returns itself, so they queue here and
    :func:`finish` applies the queue to whatever answers (page, redirect or error page)."""
    queued: dict[str, Cookie] = request.state.__dict__.setdefault("web_cookies", {})
    queued[name] = Cookie(name, value, max_age, samesite)


def finish(request: Request, response: Response) -> Response:
    """Apply the queued cookies and the page's caching rule to ``response``."""
    for cookie in request.state.__dict__.get("web_cookies", {}).values():
        # __Host-: Secure, Path=/, no Domain: only this exact origin ever receives it.
        response.set_cookie(
            cookie.name,
            cookie.value,
            max_age=cookie.max_age,
            path="/",
            secure=True,
            httponly=True,
            samesite=cookie.samesite,
        )
    response.headers["Cache-Control"] = "no-store"
    # Not the API's no-referrer: under it Chrome sends `Origin: null` with a same-origin
    # form post, which the CSRF origin check (rightly) refuses. same-origin still gives
    # other sites no referrer.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render ``template`` as this request's page (see the module docstring)."""
    nonce = secrets.token_urlsafe(18)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    values: dict[str, Any] = {
        "request": request,
        "csp_nonce": nonce,
        "csrf_token": csrf.token_for(request),
        "principal": getattr(request.state, "principal", None),
        "notice": notice,
        "nav": None,
    }
    if context:
        values.update(context)
    body = ENV.get_template(template).render(values)
    response = HTMLResponse(body, status_code=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP.format(nonce=nonce)
    finish(request, response)
    return response


def finish_json(request: Request, body: Any) -> Response:
    """A JSON answer for the pages' own script (``no-store``, queued cookies set)."""
    return finish(request, JSONResponse(body))


def redirect(request: Request, path: str, **query: str) -> Response:
    """A 303 to a local ``path`` (after a POST, the browser GETs it)."""
    target = path + ("?" + urlencode(query) if query else "")
    return finish(request, RedirectResponse(target, status_code=303))


def safe_next(value: str | None, default: str) -> str:
    """``value`` if it is a path on this site, else ``default`` (no open redirect):
    one leading slash, no scheme or authority, no backslash or control character."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
        or len(value) > 2000
    ):
        return default
    return value


def markup(text: str) -> Markup:
    """Trusted, already-escaped HTML (the SVG helpers' output) for a template."""
    return Markup(text)  # noqa: S704  # nosec B704 - callers pass SVG they built with escaping


Renderer = Callable[[Request, Exception], Response]
