"""Security headers on every response, errors included, and no server banner."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"

PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(), camera=(), cross-origin-isolated=(), display-capture=(), "
    "encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), keyboard-map=(), "
    "magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), "
    "publickey-credentials-get=(), screen-wake-lock=(), sync-xhr=(self), usb=(), web-share=(), "
    "xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), gamepad=(), hid=(), "
    "idle-detection=(), interest-cohort=(), serial=(), unload=()"
)

_BANNERS = {b"server", b"x-powered-by", b"x-aspnet-version", b"x-xss-protection"}


def default_headers(hsts_max_age: int) -> list[tuple[bytes, bytes]]:
    """The header set of security-checklist §4.1. Pages may override CSP and caching."""
    pairs = {
        "strict-transport-security": f"max-age={hsts_max_age}; includeSubDomains",
        "content-security-policy": API_CSP,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
        "cross-origin-resource-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-embedder-policy": "require-corp",
        "x-permitted-cross-domain-policies": "none",
        "permissions-policy": PERMISSIONS_POLICY,
    }
    return [(k.encode(), v.encode()) for k, v in pairs.items()]


class SecurityHeadersMiddleware:
    """Adds the default headers unless a response set its own value (e.g. a page's CSP)."""

    def __init__(self, app: ASGIApp, *, hsts_max_age: int) -> None:
        self.app = app
        self.headers = default_headers(hsts_max_age)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k not in _BANNERS]
                present = {k for k, _ in headers}
                headers.extend((k, v) for k, v in self.headers if k not in present)
                message["headers"] = _with_charset(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_charset(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # ASVS 4.1.1: JSON responses declare their charset explicitly.
    out = []
    for key, value in headers:
        if key == b"content-type" and value.endswith(b"json") and b"charset" not in value:
            value = value + b"; charset=utf-8"
        out.append((key, value))
    return out
