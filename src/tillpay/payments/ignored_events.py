"""Verified webhooks tillpay does not act on: acknowledged, stored as ``ignored``, never
processed.

A provider retries every delivery that is not answered 2xx, so refusing a correctly signed
event only makes it come back for days. Events of a type tillpay does not handle, about
objects it did not create, or of a shape it cannot read are therefore answered 200 and kept
(status ``ignored``, ``last_error`` saying why) for operators. Only a bad signature or a
body that is not JSON is refused.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.kit.db import utcnow
from tillpay.payments.models import WebhookEvent, WebhookEventStatus

__all__ = ["IGNORED", "NOT_HANDLED", "UNEXPECTED_SHAPE", "store_ignored_webhook"]

IGNORED: Final = WebhookEventStatus.IGNORED
NOT_HANDLED: Final = "not_handled"
UNEXPECTED_SHAPE: Final = "unexpected_shape"


async def store_ignored_webhook(
    session: AsyncSession, provider: str, payload: bytes, *, reason: str
) -> bool:
    """Store a verified event once as ``ignored``; False when it was a duplicate delivery."""
    # Not every provider sends an event id (Paystack does not): the body identifies it.
    dedupe_key = f"ignored:{hashlib.sha256(payload).hexdigest()}"
    existing = await session.execute(
        select(WebhookEvent.id).where(
            WebhookEvent.provider == provider, WebhookEvent.dedupe_key == dedupe_key
        )
    )
    if existing.scalar_one_or_none() is not None:
        return False
    now = utcnow()
    try:
        async with session.begin_nested():
            session.add(
                WebhookEvent(
                    provider=provider,
                    dedupe_key=dedupe_key,
                    event_type=event_type(payload),
                    reference=None,
                    payload=payload.decode("utf-8", errors="replace"),
                    status=IGNORED,
                    last_error=reason,
                    next_attempt_at=now,
                    processed_at=now,
                )
            )
            await session.flush()
    except IntegrityError:
        return False  # a parallel delivery stored it first
    return True


def event_type(payload: bytes) -> str:
    """The provider's event name (``type`` or ``event``) when it is storable text."""
    try:
        event = json.loads(payload)
    except ValueError:
        return "unknown"
    name = event.get("type", event.get("event")) if isinstance(event, dict) else None
    if not isinstance(name, str) or not name or "\x00" in name:
        return "unknown"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return "unknown"
    return name[:64]
