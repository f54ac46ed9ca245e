"""Opening an AMQP connection without leaking it when the broker cannot be reached."""

from __future__ import annotations

import contextlib

import aio_pika
from aio_pika.abc import AbstractConnection


async def connect(url: str, *, timeout: float) -> AbstractConnection:  # noqa: ASYNC109 - passed to the AMQP handshake, as aio-pika takes it
    """A connected aio-pika connection. ``aio_pika.connect`` leaves the half-made
    connection to the garbage collector when connecting fails (whose finalizer then
    schedules a close nobody awaits); this closes it."""
    connection = aio_pika.Connection(aio_pika.connection.make_url(url))
    try:
        await connection.connect(timeout=timeout)
    except BaseException:
        with contextlib.suppress(Exception):
            await connection.close()
        raise
    return connection
