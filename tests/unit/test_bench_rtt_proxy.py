"""The benchmark's round-trip counter, against a real local server with known exchanges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from bench.rtt_proxy import RttProxy


async def _answer_each_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo each line back, in two separate writes (one answer, two packets)."""
    while line := await reader.readline():
        writer.write(line[:1])
        await writer.drain()
        await asyncio.sleep(0.005)
        writer.write(line[1:])
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[RttProxy]:
    server = await asyncio.start_server(_answer_each_line, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with RttProxy("127.0.0.1", port) as counting:
        yield counting
    server.close()
    await server.wait_closed()


async def _exchange(port: int, requests: list[bytes]) -> list[bytes]:
    """Send each request in two writes, wait for its whole answer, then send the next."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for request in requests:
        writer.write(request[:2])
        await writer.drain()
        await asyncio.sleep(0.005)
        writer.write(request[2:])
        await writer.drain()
        answers.append(await reader.readline())
    writer.close()
    await writer.wait_closed()
    return answers


async def test_one_request_and_its_answer_count_as_one_round_trip_each(proxy: RttProxy) -> None:
    answers = await _exchange(proxy.port, [b"hello\n", b"world\n", b"again\n"])
    assert answers == [b"hello\n", b"world\n", b"again\n"]
    assert proxy.round_trips == 3


async def test_round_trips_add_up_over_connections(proxy: RttProxy) -> None:
    await asyncio.gather(
        _exchange(proxy.port, [b"one\n", b"two\n"]),
        _exchange(proxy.port, [b"three\n", b"four\n", b"five\n"]),
    )
    assert sorted(c.round_trips for c in proxy.connections) == [2, 3]
    assert proxy.round_trips == 5


async def test_pipelined_requests_answered_together_count_once(proxy: RttProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"a\nb\nc\n")
    await writer.drain()
    lines = [await reader.readline() for _ in range(3)]
    await asyncio.sleep(0.05)
    writer.close()
    await writer.wait_closed()
    assert lines == [b"a\n", b"b\n", b"c\n"]
    assert proxy.round_trips == 1
