"""The credentials' periodic job: forgetting service-token ids past their tokens' expiry."""

from __future__ import annotations

from typing import Any

from tillpay.credentials.service_tokens import purge_used
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger

log = get_logger(__name__)

PURGE_JOB = "credentials.purge_used_service_tokens"


async def purge_used_service_tokens(context: JobContext[Any]) -> None:
    """Delete ``used_service_tokens`` rows whose tokens have expired: a replayed token is
    refused by its ``exp`` by then, so the row guards nothing any more."""
    count = await purge_used(context.database)
    if count:
        log.info("credentials.used_service_tokens_purged", count=count)
