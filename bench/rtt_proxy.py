"""A TCP proxy that counts network round trips (for PostgreSQL and Redis).

A round trip is counted each time, on one connection, traffic turns from
client→server to server→client: a request (however many packets) followed by its
answer (however many packets) is one; pipelined requests answered together are one.
The benchmark puts it between a tillpay process and PostgreSQL (or Redis), sends N
sequential requests and divides the difference of :attr:`RttProxy.round_trips` by N.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Connection:
    __slots__ = ("last", "round_trips")

    def __init__(self) -> None:
        self.last = ""  # "c" after client→server bytes, "s" after server→client bytes
        self.round_trips = 0


class RttProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connections: list[_Connection] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def round_trips(self) -> int:
        return sum(c.round_trips for c in self.connections)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> RttProxy:
        self._server = await asyncio.start_server(self._handle, host, port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # Closing the sockets ends the pumps; cancelling the handlers would be logged.
            for writer in list(self._writers):
                writer.close()
            await asyncio.wait(list(self._tasks), timeout=5) if self._tasks else None
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def __aenter__(self) -> RttProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        state = _Connection()
        self.connections.append(state)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, state, "c"),
                self._pump(up_reader, writer, state, "s"),
            )
        except asyncio.CancelledError:
            pass  # the event loop is shutting down (Ctrl-C): just close the sockets
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, state: _Connection, side: str
    ) -> None:
        try:
            while data := await source.read(65536):
                if side == "s" and state.last == "c":
                    state.round_trips += 1
                state.last = side
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.write_eof() if sink.can_write_eof() else sink.close()
