"""Arrangements for the console's provider-event, webhook and activity pages: the
merchant-webhook receiver and app settings (``tests/webhooks``), an admin signed in to
the console, and a dead provider event whose replay makes a refund."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.accounts.helpers import Account
from tests.conftest import ClientFactory
from tests.console.helpers import browser, csrf_of, post_form, sign_in
from tests.webhooks.conftest import Hooks, receiver, webhook_settings
from tests.webhooks.receiver import Receiver
from tillpay.accounts.models import Role
from tillpay.payments.models import PaymentAttempt, WebhookEvent, WebhookEventStatus
from tillpay.payments.webhooks import WEBHOOK_MAX_ATTEMPTS
from tillpay.sandbox import psp

__all__ = ["receiver"]


@pytest.fixture
async def client(
    make_client: ClientFactory, clean_db: None, receiver: Receiver
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**webhook_settings(receiver)) as c:
        yield c


@pytest.fixture
def hooks(client: httpx.AsyncClient, mail_dir: Path) -> Hooks:
    return Hooks(client, mail_dir)


@pytest.fixture
async def admin(hooks: Hooks) -> Account:
    """An administrator with 2FA (the console signs in with the code)."""
    return await hooks.accounts.user(role=Role.ADMIN, totp=True)


@pytest.fixture
async def web(hooks: Hooks, admin: Account) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in to the console as ``admin``."""
    async with browser(hooks.client) as signed_in:
        done = await sign_in(signed_in, admin)
        assert done.status_code == 303, done.text
        yield signed_in


async def submit(
    web: httpx.AsyncClient, page_path: str, action: str, data: dict[str, Any] | None = None
) -> httpx.Response:
    """Open ``page_path`` and post ``data`` to ``action`` with the page's CSRF token."""
    page = await web.get(page_path)
    assert page.status_code == 200, page.text
    return await post_form(web, action, {"csrf_token": csrf_of(page.text), **(data or {})})


async def dead_refund_event(hooks: Hooks) -> tuple[str, dict[str, Any]]:
    """A paid payment refunded at the provider (the sandbox's own API, as from its
    dashboard), whose ``refund.succeeded`` webhook tillpay stored and then ran out of
    retries on. Returns (the event's id, the payment)."""
    checkout = hooks.checkout
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer)
    database = checkout.app.state.database
    async with database.session() as session, session.begin():
        attempt = (
            await session.execute(
                select(PaymentAttempt).where(PaymentAttempt.payment_id == payment["id"])
            )
        ).scalar_one()
        assert attempt.provider_object_id
        await psp.refund_session(
            session, checkout.app.state.settings, attempt.provider_object_id, 500, "dashboard-1"
        )
    assert await checkout.deliver_webhooks() >= 1
    async with database.session() as session, session.begin():
        event = (
            await session.execute(
                select(WebhookEvent).where(
                    WebhookEvent.event_type == "refund.succeeded",
                    WebhookEvent.status == WebhookEventStatus.PENDING,
                )
            )
        ).scalar_one()
        # What WEBHOOK_MAX_ATTEMPTS failed re-reads leave behind (the provider was down).
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event.id)
            .values(
                status=WebhookEventStatus.DEAD,
                attempts=WEBHOOK_MAX_ATTEMPTS,
                last_error="provider re-read failed: ProviderUnavailable",
            )
        )
    return event.id, payment
