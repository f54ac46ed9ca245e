from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tests.conftest import IN_CI
from tests.realtime.conftest import make_live
from tests.webhooks.conftest import client, hooks, receiver
from tillpay.hub import broker

__all__ = ["AMQP_URL", "client", "hooks", "make_live", "receiver", "topology"]

AMQP_URL = os.environ.get("TILLPAY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: Every queue tillpay may declare for its own consumers.
OWN_CONSUMERS = ("webhooks", "email", "realtime")


@pytest.fixture
async def topology() -> AsyncIterator[broker.Topology]:
    """An exchange (and the queues named after it) of this test alone on the machine's
    shared broker, deleted afterwards: other runs' events and consumers never mix in."""
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception:
        if IN_CI:
            raise
        pytest.skip("RabbitMQ unreachable")
    names = broker.Topology(f"tillpay-test-{uuid.uuid4().hex[:12]}.events")
    try:
        yield names
    finally:
        channel = await connection.channel()
        for queue in (*map(names.queue_of, OWN_CONSUMERS), names.dead_letter_queue):
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in (names.exchange, names.dead_letter_exchange):
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
        await connection.close()
