"""One client's WebSocket: the protocol of ``/v1/ws`` (docs/realtime.md).

1. A browser's ``Origin`` must be this service's own or on ``TILLPAY_CORS_ALLOW_ORIGINS``;
   otherwise the handshake is refused (HTTP 403) — cross-site WebSocket hijacking. A client
   that sends no ``Origin`` is not a browser and cannot be a hijacked one.
2. The URL takes no query string (a token there is refused with the handshake: it would
   land in proxies' and access logs). The first message, within ``TILLPAY_REALTIME_AUTH_TIMEOUT_SECONDS``, is
   ``{"type": "auth", "token": "<access token>"}``: never a query string (it would land in
   access logs and proxies). The token is checked exactly as an HTTP request's. A console
   page sends ``{"type": "auth", "ticket": "<ticket>"}`` instead (``tickets``).
3. ``{"type": "ready"}``, then events addressed to this user (and to the ``admin`` channel
   once subscribed, which needs ``events:read``).
4. While open: the session is re-checked every ``TILLPAY_REALTIME_RECHECK_SECONDS`` and the
   socket closes when it ends (revoked, expired, user deactivated, role changed) or when
   the access token expires without a fresh ``auth``; quiet sockets get ``heartbeat``s; a
   client that falls ``TILLPAY_REALTIME_QUEUE_SIZE`` messages behind is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tillpay.accounts.deps import authenticate, session_rejection
from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import AdminTwoFactorRequired, Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.kit.errors import Unauthorized
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.logging import get_logger
from tillpay.realtime import tickets
from tillpay.realtime.hub import ADMIN_CHANNEL, OVERFLOW, Hub, Subscriber, TooManyConnections
from tillpay.settings import Settings

log = get_logger(__name__)

# Close codes (RFC 6455 §7.4; 4000-4999 are the application's own).
POLICY = 1008  # the first message was not an auth message, or a message was malformed
TOO_BIG = 1009
TOO_SLOW = 1013  # "try again later": the client fell too far behind
UNAUTHORIZED = 4001  # bad token, session ended, token expired
AUTH_TIMEOUT = 4008
TOO_MANY = 4029

MAX_MESSAGE = 8192


@dataclass
class Closing(Exception):
    code: int
    reason: str


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return origin == f"{scheme}://{websocket.headers.get('host', '')}"


async def _receive(websocket: WebSocket) -> dict[str, Any] | None:
    """The client's next JSON object, or None when it went away."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None:
        raw_bytes = message.get("bytes") or b""
        if len(raw_bytes) > MAX_MESSAGE:
            raise Closing(TOO_BIG, "message too big")
        raw = raw_bytes.decode("utf-8", errors="replace")
    if len(raw) > MAX_MESSAGE:
        raise Closing(TOO_BIG, "message too big")
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise Closing(POLICY, "messages are JSON objects") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        raise Closing(POLICY, "messages are JSON objects with a type")
    return parsed


class Session:
    """One authenticated socket."""

    def __init__(
        self,
        websocket: WebSocket,
        rt: AccountsRuntime,
        hub: Hub,
        settings: Settings,
        principal: Principal,
        claims: dict[str, Any],
    ) -> None:
        self.websocket = websocket
        self.rt = rt
        self.hub = hub
        self.settings = settings
        self.principal = principal
        self.claims = claims
        self.subscriber: Subscriber = hub.join(principal.user_id)
        self.last_sent = time.monotonic()

    async def read(self) -> None:
        """The client's messages: ping, subscribe, a fresh auth."""
        while True:
            message = await _receive(self.websocket)
            if message is None:
                return
            kind = message["type"]
            if kind == "ping":
                self.subscriber.offer(_dumps({"type": "pong"}))
            elif kind == "auth":
                principal, claims = await _auth(self.websocket, self.rt, message)
                if principal.user_id != self.principal.user_id:
                    raise Closing(UNAUTHORIZED, "a socket stays with one user")
                self.principal, self.claims = principal, claims
                if not self._may_read_admin():
                    self.hub.unsubscribe_admin(self.subscriber)
                self.subscriber.offer(
                    _dumps({"type": "authenticated", "expires_at": claims["exp"]})
                )
            elif kind == "subscribe" and message.get("channel") == ADMIN_CHANNEL:
                self._subscribe_admin()
            else:
                self.subscriber.offer(_dumps({"type": "error", "code": "unknown_message"}))

    def _may_read_admin(self) -> bool:
        return Permission.EVENTS_READ in self.principal.permissions

    def _subscribe_admin(self) -> None:
        try:
            allowed = self.principal.can(Permission.EVENTS_READ)
        except AdminTwoFactorRequired:
            self.subscriber.offer(_dumps({"type": "error", "code": "admin_2fa_required"}))
            return
        if not allowed:
            log.warning("realtime.subscribe_denied", user_id=self.principal.user_id)
            self.subscriber.offer(_dumps({"type": "error", "code": "forbidden"}))
            return
        self.hub.subscribe_admin(self.subscriber)
        self.subscriber.offer(_dumps({"type": "subscribed", "channel": ADMIN_CHANNEL}))

    async def write(self) -> None:
        """Send what the hub queued, one at a time, each within the send timeout."""
        while True:
            item = await self.subscriber.queue.get()
            if item is OVERFLOW:
                raise Closing(TOO_SLOW, "too far behind")
            try:
                await asyncio.wait_for(
                    self.websocket.send_text(str(item)), self.settings.realtime_send_timeout_seconds
                )
            except TimeoutError:
                log.warning("realtime.send_timeout", user_id=self.principal.user_id)
                raise Closing(TOO_SLOW, "too slow to receive") from None
            self.last_sent = time.monotonic()

    async def watch(self) -> None:
        """Re-check the session, end at token expiry, send heartbeats on a quiet socket."""
        recheck = self.settings.realtime_recheck_seconds
        beat = self.settings.realtime_heartbeat_seconds
        next_check = time.monotonic() + recheck
        while True:
            now = time.monotonic()
            expires_in = float(self.claims["exp"]) - time.time()
            wait = min(next_check - now, self.last_sent + beat - now, expires_in)
            await asyncio.sleep(max(wait, 0.0))
            if float(self.claims["exp"]) <= time.time():
                raise Closing(UNAUTHORIZED, "token expired")
            now = time.monotonic()
            if now >= next_check:
                async with self.rt.database.read_connection() as db:
                    reason = await session_rejection(db, self.claims)
                if reason is not None:
                    log.info(
                        "realtime.session_ended",
                        user_id=self.principal.user_id,
                        reason=reason,
                        session_id=self.principal.session_id,
                    )
                    raise Closing(UNAUTHORIZED, "session ended")
                next_check = now + recheck
            if now >= self.last_sent + beat:
                self.subscriber.offer(_dumps({"type": "heartbeat"}))
                # Counted as sent now, so one quiet stretch queues one heartbeat.
                self.last_sent = now

    def close(self) -> None:
        self.hub.leave(self.subscriber)


async def _auth(
    websocket: WebSocket, rt: AccountsRuntime, message: dict[str, Any]
) -> tuple[Principal, dict[str, Any]]:
    """The principal an ``auth`` message's token stands for (checked as over HTTP), or
    its console ticket (:mod:`tillpay.realtime.tickets`: a cookie-session page's)."""
    token, ticket = message.get("token"), message.get("ticket")
    if message.get("type") == "auth" and token is None and isinstance(ticket, str) and ticket:
        try:
            return await tickets.redeem(
                rt,
                ticket,
                ip=client_ip(websocket.scope),
                lifetime=rt.settings.console_idle_timeout_seconds,
            )
        except Unauthorized:
            raise Closing(UNAUTHORIZED, "invalid or expired ticket") from None
    if message.get("type") != "auth" or not isinstance(token, str) or not token:
        raise Closing(POLICY, "send an auth message first")
    try:
        return await authenticate(rt, token, ip=client_ip(websocket.scope), where="/v1/ws")
    except Unauthorized:
        raise Closing(UNAUTHORIZED, "invalid or expired token") from None


async def _first_auth(
    websocket: WebSocket, rt: AccountsRuntime, settings: Settings
) -> tuple[Principal, dict[str, Any]] | None:
    try:
        async with asyncio.timeout(settings.realtime_auth_timeout_seconds):
            message = await _receive(websocket)
    except TimeoutError:
        raise Closing(AUTH_TIMEOUT, "authenticate first") from None
    if message is None:
        return None
    return await _auth(websocket, rt, message)


async def serve(websocket: WebSocket, *, rt: AccountsRuntime, hub: Hub, settings: Settings) -> None:
    """Run one socket from handshake to close."""
    if websocket.url.query:
        # The endpoint takes no parameters; above all no token (it would be logged on the
        # way, by proxies and access logs). Refused, not ignored, so a client learns.
        log.warning("realtime.query_refused")
        await websocket.close(code=POLICY)
        return
    if not origin_allowed(websocket, settings.cors_allow_origins):
        log.warning("realtime.origin_refused", origin=websocket.headers.get("origin", "")[:200])
        await websocket.close(code=POLICY)  # before accept: the handshake gets HTTP 403
        return
    await websocket.accept()
    session: Session | None = None
    closing: Closing | None = None
    try:
        first = await _first_auth(websocket, rt, settings)
        if first is None:
            return
        principal, claims = first
        try:
            session = Session(websocket, rt, hub, settings, principal, claims)
        except TooManyConnections:
            raise Closing(TOO_MANY, "too many connections") from None
        log.info("realtime.connected", user_id=principal.user_id)
        session.subscriber.offer(
            _dumps({"type": "ready", "user_id": principal.user_id, "expires_at": claims["exp"]})
        )
        tasks = [asyncio.create_task(c) for c in (session.read(), session.write(), session.watch())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            error = task.exception()
            if isinstance(error, Closing):
                closing = error
            elif error is not None and not isinstance(error, WebSocketDisconnect):
                log.error("realtime.socket_failed", error=type(error).__name__)
                closing = Closing(1011, "internal error")
    except Closing as exc:
        closing = exc
    except WebSocketDisconnect:
        closing = None
    finally:
        if session is not None:
            session.close()
            log.info(
                "realtime.disconnected",
                user_id=session.principal.user_id,
                code=closing.code if closing else None,
            )
    if closing is not None:
        with contextlib.suppress(Exception):
            await websocket.close(code=closing.code, reason=closing.reason)
