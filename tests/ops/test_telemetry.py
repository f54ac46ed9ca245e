"""Tracing (OTLP to a local fake collector) and error tracking (Sentry to a local fake DSN).

Both receivers are plain HTTP servers on 127.0.0.1 that record what is POSTed: the OTLP
exporter and the Sentry SDK run for real, and the tests read the bytes they sent.
"""

from __future__ import annotations

import gzip
import json
import logging
import secrets
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import text

from tests.conftest import ClientFactory
from tillpay.kit import telemetry as hooks
from tillpay.kit.db import Database, DbSession
from tillpay.kit.jobs import Job, JobContext
from tillpay.kit.logging import configure_logging, get_logger
from tillpay.ops import telemetry
from tillpay.settings import Settings
from tillpay.worker import Worker

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER
CLIENT_KIND = 3
STATUS_ERROR = 2


class Receiver:
    """Records every POST (path, headers, body with its content encoding undone)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                encoding = self.headers.get("content-encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                assert encoding in ("", "gzip", "deflate"), encoding
                posts.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self) -> None:
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[Any]:
        found = []
        for path, _, body in self.posts:
            assert path == "/v1/traces"
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found.extend(scope.spans)
        return found

    def sent(self) -> bytes:
        return b"\n".join(body for _, _, body in self.posts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _hooks_off_after() -> Iterator[None]:
    yield
    hooks.uninstall()


def _hex(raw: bytes) -> str:
    return raw.hex()


def _lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def _traced_routes(app: FastAPI) -> None:
    @app.get("/v1/telemetry-probe/db")
    async def db(session: DbSession) -> dict[str, int]:
        get_logger("tests.telemetry").info("probe.db")
        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}


async def test_requests_queries_logs_and_problems_share_the_trace(
    make_client: ClientFactory, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client(
        setup=_traced_routes, otel_exporter_otlp_endpoint=receiver.url
    ) as client:
        capsys.readouterr()
        ok = await client.get("/v1/telemetry-probe/db")
        missing = await client.get("/v1/does-not-exist")
        logged = _lines(capsys.readouterr().out)
    # The lifespan's end exported what was buffered.
    spans = receiver.spans()

    assert ok.json() == {"one": 1}
    request = next(s for s in spans if s.kind == SERVER_KIND and "telemetry-probe" in s.name)
    queries = [s for s in spans if s.trace_id == request.trace_id and s.kind == CLIENT_KIND]
    assert queries, [s.name for s in spans]
    by_id = {s.span_id: s for s in spans}
    for query in queries:  # each query nests (through the handler's spans) in the request's
        parent = query
        while parent.parent_span_id:
            parent = by_id[parent.parent_span_id]
        assert parent.span_id == request.span_id
    probe_line = next(line for line in logged if line.get("event") == "probe.db")
    assert probe_line["trace_id"] == _hex(request.trace_id)
    assert probe_line["span_id"] in {_hex(s.span_id) for s in spans}

    assert missing.status_code == 404
    problem = missing.json()
    assert problem["instance"] == f"urn:request:{missing.headers['x-request-id']}"
    assert problem["trace_id"] in {_hex(s.trace_id) for s in spans if s.kind == SERVER_KIND}
    access = next(
        line for line in logged if line.get("event") == "http.request" and line["status"] == 404
    )
    assert access["trace_id"] == problem["trace_id"]


async def test_a_job_run_is_a_span_with_its_queries_calls_and_redacted_failure(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(otel_exporter_otlp_endpoint=receiver.url)
    started = telemetry.start(settings)
    database = Database.from_settings(settings)
    started.instrument_database(database)
    key = "sk_live_" + secrets.token_hex(12)

    async def job(context: JobContext[Settings]) -> bool:
        async with context.database.read_connection() as conn:
            await conn.execute(text("SELECT 1"))
        async with httpx.AsyncClient() as client:
            await client.get(f"{receiver.url}/provider")
        raise RuntimeError(f"provider refused key {key}")

    worker = Worker(JobContext(settings=settings, database=database), jobs=[])
    try:
        assert not await worker.run_once(Job("telemetry.probe", 60, job))
    finally:
        await database.dispose()
        started.shutdown()

    spans = receiver.spans()
    run = next(s for s in spans if s.name == "job telemetry.probe")
    assert run.parent_span_id == b""
    children = [s for s in spans if s.parent_span_id == run.span_id]
    assert {s.kind for s in children} == {CLIENT_KIND}
    assert any("GET" in s.name for s in children), [s.name for s in children]  # httpx
    assert len(children) >= 2  # and the query
    assert run.status.code == STATUS_ERROR
    assert [e.name for e in run.events] == ["exception"]
    assert key.encode() not in receiver.sent()
    assert b"provider refused key [REDACTED]" in receiver.sent()


def _sentry_routes(app: FastAPI) -> None:
    @app.get("/v1/telemetry-probe/crash")
    async def crash() -> None:
        password = "hunter2-" + secrets.token_hex(4)
        # A third-party log line: a breadcrumb of the event, and not redacted by its logger.
        logging.getLogger("tests.vendor").warning("login with password=%s", password)
        raise RuntimeError(f"charge failed for sk_live_{password[8:]}abcdef password={password}")


async def test_an_unhandled_error_reaches_sentry_without_its_secrets(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    bearer = "tok_" + secrets.token_hex(16)
    dsn = f"http://public@{receiver.url.removeprefix('http://')}/1"
    async with make_client(setup=_sentry_routes, sentry_dsn=dsn) as client:
        response = await client.get(
            "/v1/telemetry-probe/crash?api_key=qk_" + bearer,
            headers={"Authorization": f"Bearer {bearer}", "Cookie": f"session={bearer}"},
        )
    assert response.status_code == 500
    assert "trace_id" not in response.json()  # Sentry alone is not tracing
    sent = receiver.sent()
    assert receiver.posts[0][0] == "/api/1/envelope/"
    assert b"RuntimeError" in sent
    assert b"charge failed for [REDACTED]" in sent
    assert b"login with password=[REDACTED]" in sent  # the breadcrumb
    assert bearer.encode() not in sent
    assert b"hunter2-" not in sent


async def test_a_failing_job_reaches_sentry_redacted(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    key = "sk_live_" + secrets.token_hex(12)
    settings = make_settings(sentry_dsn=f"http://public@{receiver.url.removeprefix('http://')}/1")
    started = telemetry.start(settings)
    database = Database.from_settings(settings)

    async def job(context: JobContext[Settings]) -> bool:
        raise ValueError(f"webhook secret whsec_{key[8:]} and key {key}")

    try:
        worker = Worker(JobContext(settings=settings, database=database), jobs=[])
        assert not await worker.run_once(Job("telemetry.failing", 60, job))
    finally:
        await database.dispose()
        started.shutdown()
    sent = receiver.sent()
    assert b"ValueError" in sent
    assert key[8:].encode() not in sent


def test_trace_ids_are_logged_after_redaction() -> None:
    # A Luhn-valid digit run, which card masking would otherwise cut out of the trace id.
    trace_id, span_id = "4111111111111111" + "a" * 16, "b" * 16
    stream = StringIO()
    configure_logging(json=True, stream=stream)
    hooks.install(ids=lambda: (trace_id, span_id))
    try:
        get_logger("tests.telemetry").info("traced", card="4111111111111111")
    finally:
        hooks.uninstall()
        get_logger("tests.telemetry").info("untraced")
        configure_logging(json=True)
    traced, untraced = _lines(stream.getvalue())
    assert (traced["trace_id"], traced["span_id"]) == (trace_id, span_id)
    assert traced["card"] == "****1111"
    assert "trace_id" not in untraced
    assert "span_id" not in untraced


# What tracing and error tracking load. (redis-py imports OpenTelemetry's metrics SDK on
# its own whenever it is installed, for metrics it records only once configured; tillpay
# never configures them.)
_TELEMETRY_MODULES = (
    "sentry_sdk",
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation",
    "opentelemetry.exporter",
)


def test_off_by_default_nothing_is_imported() -> None:
    script = (
        "import sys\n"
        "from tillpay.app import create_app\n"
        "from tillpay.settings import Settings\n"
        "create_app(Settings(environment='test', secret_key='k' * 40))\n"
        f"print([m for m in sys.modules if m.startswith({_TELEMETRY_MODULES!r})])\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


async def test_off_by_default_no_trace_fields(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client() as client:
        capsys.readouterr()
        response = await client.get("/v1/does-not-exist")
    assert "trace_id" not in response.json()
    lines = _lines(capsys.readouterr().out)
    assert lines
    assert all("trace_id" not in line and "span_id" not in line for line in lines)
