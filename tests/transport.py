"""An httpx transport that routes by host name, so provider adapters reach in-process
emulators (and the sandbox reaches tillpay) over real HTTP semantics without a network."""

from __future__ import annotations

import httpx


class RoutingTransport(httpx.AsyncBaseTransport):
    """Requests for a host in ``routes`` go to that transport; everything else to
    ``default``. Tests add emulators with ``transport.routes["api.stripe.test"] = ...``."""

    def __init__(self, default: httpx.AsyncBaseTransport) -> None:
        self.default = default
        self.routes: dict[str, httpx.AsyncBaseTransport] = {}
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        target = self.routes.get(request.url.host, self.default)
        return await target.handle_async_request(request)

    def mount(self, host: str, app: object) -> None:
        """Route ``host`` to an ASGI app (an emulator)."""
        self.routes[host] = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
