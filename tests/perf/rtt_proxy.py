"""A loopback TCP proxy that counts round trips, for tests that budget them.

A round trip is a client message answered by the server: each time the traffic of a
connection turns from client→server to server→client counts one. Several client writes
before an answer (a pipeline) are one round trip, as they cost one network latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class RoundTripProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` and counts round trips on all connections."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.round_trips = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def reset(self) -> None:
        self.round_trips = 0
        self.connections = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        # Which side spoke last on this connection: a server answer after the client spoke
        # closes one round trip.
        state = {"client_spoke": False}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            while data := await src.read(65536):
                if client:
                    state["client_spoke"] = True
                elif state["client_spoke"]:
                    state["client_spoke"] = False
                    self.round_trips += 1
                dst.write(data)
                await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def counting_proxy(host: str, port: int) -> AsyncIterator[RoundTripProxy]:
    proxy = RoundTripProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
