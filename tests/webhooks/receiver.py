"""A real HTTP receiver on 127.0.0.1 for merchant webhook tests: it records every request
(headers, body, arrival time) and answers with the statuses the test queues (200 once
they run out), counting the requests in flight per path."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: ``time.monotonic()`` when the request arrived.
    at: float = 0.0


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    #: (status, body, delay seconds) answered next, in order.
    answers: deque[tuple[int, bytes, float]] = field(default_factory=deque)
    #: Answers queued for one request path only; taken before ``answers``.
    answers_for: dict[str, deque[tuple[int, bytes, float]]] = field(default_factory=dict)
    #: A Location header for 3xx answers.
    location: str = ""
    #: Requests being answered now, and the most at once, per path.
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/tillpay"

    def answer(
        self, status: int, body: bytes = b"", delay: float = 0.0, *, path: str | None = None
    ) -> None:
        queue = self.answers if path is None else self.answers_for.setdefault(path, deque())
        queue.append((status, body, delay))

    def next_answer(self, path: str) -> tuple[int, bytes, float]:
        for queue in (self.answers_for.get(path), self.answers):
            if queue:
                return queue.popleft()
        return (200, b"ok", 0.0)


def start() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                now = receiver.in_flight.get(self.path, 0) + 1
                receiver.in_flight[self.path] = now
                most = receiver.most_in_flight.get(self.path, 0)
                receiver.most_in_flight[self.path] = max(most, now)
                receiver.received.append(
                    Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.monotonic(),
                    )
                )
                status, answer, delay = receiver.next_answer(self.path)
            if delay:
                time.sleep(delay)
            # Out of flight once answered (before the write: the client may act on the
            # answer at once, and a slightly low count can hide no long overlap).
            with receiver.lock:
                receiver.in_flight[self.path] -= 1
            self.send_response(status)
            if 300 <= status < 400 and receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
