"""Socket tickets: how a page signed in with the console's cookie session (which holds
no access token, and whose cookie JavaScript cannot read) opens ``/v1/ws``.

A console route issues one (:func:`issue`) to a same-origin ``POST`` carrying the
session's CSRF token; the page sends it as the socket's first message,
``{"type": "auth", "ticket": "…"}``, never in the URL. A ticket

- names the console session (AuthSession id, user, role, the session's issue time), is
  HMAC-SHA256 signed under a key derived for this purpose only, and expires after
  :data:`TICKET_SECONDS`;
- is redeemed once: its nonce goes into the table of used one-time tokens that every API
  process shares (a unique key), so a copied ticket opens no second socket;
- is then held to the access token's rules: the session and user read from the database
  (revoked, expired, deactivated, role or credentials changed: refused), the admin 2FA
  rule, and while the socket is open the same periodic re-check. The socket lasts the
  console's idle timeout; the page sends a fresh ticket (``auth``) or reconnects.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from tillpay.accounts.deps import _load_state, _rejection, principal_of_state
from tillpay.accounts.principal import Principal
from tillpay.accounts.runtime import AccountsRuntime
from tillpay.credentials.models import UsedServiceToken
from tillpay.kit import sealed_claims
from tillpay.kit.crypto import derive_key
from tillpay.kit.errors import Unauthorized
from tillpay.kit.logging import get_logger

log = get_logger(__name__)

TICKET_SECONDS: Final = 30
_VERSION: Final = "wst1"
_PURPOSE: Final = "realtime-socket-ticket"


def _key(secret: str) -> bytes:
    return derive_key(secret.encode(), _PURPOSE)


def issue(secret: str, *, session_id: str, user_id: str, role: str, issued_at: int) -> str:
    """A ticket for the console session ``session_id`` (``issued_at``: when that session's
    cookie was issued, checked against a credentials change as a token's ``iat`` is)."""
    claims = {
        "sid": session_id,
        "sub": user_id,
        "role": role,
        "iat": issued_at,
        "exp": int(time.time()) + TICKET_SECONDS,
        "n": secrets.token_urlsafe(18),
    }
    return sealed_claims.seal(_key(secret), _VERSION, claims)


_REQUIRED: Final = {"sid": str, "sub": str, "role": str, "iat": int, "exp": int, "n": str}


def _claims(secret: str, ticket: str) -> dict[str, Any] | None:
    return sealed_claims.unseal(_key(secret), _VERSION, ticket, _REQUIRED)


def _refused(reason: str) -> Unauthorized:
    log.info("realtime.ticket_rejected", reason=reason)
    return Unauthorized("The ticket is invalid or expired.", code="invalid_ticket")


async def redeem(
    rt: AccountsRuntime, ticket: str, *, ip: str | None, lifetime: int
) -> tuple[Principal, dict[str, Any]]:
    """The principal a ticket stands for, and claims for the socket's re-checks (``exp``:
    ``lifetime`` seconds from now). :class:`Unauthorized` for any problem."""
    claims = _claims(rt.settings.secret_key.get_secret_value(), ticket)
    if claims is None:
        raise _refused("bad_signature")
    if claims["exp"] <= time.time():
        raise _refused("expired")
    key = hashlib.sha256(f"{_PURPOSE}\0{claims['n']}".encode()).hexdigest()
    try:
        async with rt.database.transaction() as session:
            await session.execute(
                insert(UsedServiceToken).values(
                    key=key, expires_at=datetime.fromtimestamp(claims["exp"] + 60, UTC)
                )
            )
    except IntegrityError:
        raise _refused("replayed") from None
    async with rt.database.read_connection() as db:
        state = await _load_state(db, claims["sid"])
    reason = _rejection(state, claims)
    if reason is not None or state is None:
        raise _refused(reason or "unknown_session")
    principal = principal_of_state(rt, state, claims["sid"], ip=ip)
    return principal, {**claims, "exp": int(time.time()) + lifetime}
