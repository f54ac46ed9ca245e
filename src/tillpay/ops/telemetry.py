"""Tracing (OpenTelemetry, OTLP over HTTP) and error tracking (Sentry), each when configured.

:func:`start` reads ``TILLPAY_OTEL_EXPORTER_OTLP_ENDPOINT`` and ``TILLPAY_SENTRY_DSN``; with
neither set it imports nothing and returns an inert :class:`Telemetry`. Traces cover
requests (FastAPI), queries (SQLAlchemy), outgoing HTTP (httpx: provider calls, webhook
deliveries) and job runs (``kit.telemetry.span`` in the worker). Everything leaving the
process goes through the log redaction (``kit.logging.redact_data``): span names,
attributes and events before export, Sentry events and transactions before sending.
docs/operations.md describes both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tillpay import __version__
from tillpay.kit import telemetry as hooks
from tillpay.kit.logging import get_logger, redact_data, redact_text
from tillpay.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from tillpay.kit.db import Database

log = get_logger(__name__)

# Probes and scrapes every few seconds would drown the traces that matter.
_UNTRACED_PATHS = "/healthz,/readyz,/metrics"
_SENTRY_FLUSH_SECONDS = 2.0


class Telemetry:
    """What :func:`start` switched on in this process; :meth:`shutdown` flushes it and
    switches it off again."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        sentry: Any = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self._sentry = sentry
        self._database_instrumented = False

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    def instrument_app(self, app: FastAPI) -> None:
        """A server span per request around the whole middleware stack (its ids are in
        every log line and problem document of the request)."""
        if self.tracer_provider is None:
            return
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.tracer_provider,
            excluded_urls=_UNTRACED_PATHS,
            # A span per ASGI message doubles the spans and says nothing a request's does not.
            exclude_spans=["receive", "send"],
        )

    def instrument_database(self, database: Database) -> None:
        """A client span per statement on ``database``'s engine (its read engine shares it)."""
        if self.tracer_provider is None or self._database_instrumented:
            return
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # The package declares SQLAlchemy < 2.1; the engine events it listens to are the
        # same in 2.1 (tests/ops/test_telemetry.py sees the spans).
        SQLAlchemyInstrumentor().instrument(
            engine=database.engine.sync_engine,
            tracer_provider=self.tracer_provider,
            skip_dep_check=True,
        )
        self._database_instrumented = True

    def shutdown(self) -> None:
        """Export what is buffered, send what is queued, and undo the instrumentation."""
        hooks.uninstall()
        if self.tracer_provider is not None:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            HTTPXClientInstrumentor().uninstrument()
            if self._database_instrumented:
                SQLAlchemyInstrumentor().uninstrument()
            self.tracer_provider.shutdown()
            self.tracer_provider = None
        if self._sentry is not None:
            self._sentry.get_client().close(timeout=_SENTRY_FLUSH_SECONDS)
            self._sentry = None


def start(settings: Settings) -> Telemetry:
    """Switch on what ``settings`` configures, for this process (the app or the worker)."""
    provider = _start_tracing(settings) if settings.otel_exporter_otlp_endpoint else None
    sentry = _start_sentry(settings) if settings.sentry_dsn is not None else None
    reporters: list[Callable[[BaseException], object]] = []
    if provider is not None:
        reporters.append(_mark_current_span)
    if sentry is not None:
        reporters.append(sentry.capture_exception)
    hooks.install(
        ids=_ids_reader() if provider is not None else None,
        span=provider.get_tracer("tillpay", __version__).start_as_current_span
        if provider is not None
        else None,
        reporters=tuple(reporters),
    )
    if provider is not None or sentry is not None:
        log.info("telemetry.started", tracing=provider is not None, errors=sentry is not None)
    return Telemetry(provider, sentry)


# --- tracing ---------------------------------------------------------------------------------


def _start_tracing(settings: Settings) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    assert settings.otel_exporter_otlp_endpoint is not None
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": __version__,
            "deployment.environment.name": settings.environment,
        }
    )
    # Not set as OpenTelemetry's global provider (which can be set once per process): it
    # is handed to each instrumentation, so every app built in a process (tests) has its own.
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio))
    )
    # The endpoint setting is a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is; headers, TLS
    # files, timeout and compression come from the standard OTEL_EXPORTER_OTLP_* variables.
    exporter = OTLPSpanExporter(endpoint=f"{settings.otel_exporter_otlp_endpoint}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(_redacting_exporter(exporter)))
    # Process-wide (httpx's transports are patched): undone by Telemetry.shutdown.
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    return provider


def _ids_reader() -> Callable[[], tuple[str, str] | None]:
    from opentelemetry.trace import get_current_span

    def current_ids() -> tuple[str, str] | None:
        # Read on every log line: one context lookup, no import.
        context = get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    return current_ids


def _mark_current_span(exc: BaseException) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        # The type only: a message may hold what redaction is there to remove.
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def _redacted_attributes(attributes: Mapping[str, Any] | None) -> Any:
    return None if attributes is None else redact_data(dict(attributes))


def _redacting_exporter(inner: SpanExporter) -> SpanExporter:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Status

    def redacted(span: ReadableSpan) -> ReadableSpan:
        status = span.status
        if status.description:
            status = Status(status.status_code, redact_text(status.description))
        return ReadableSpan(
            name=redact_text(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_redacted_attributes(span.attributes),
            events=[
                Event(e.name, _redacted_attributes(e.attributes), e.timestamp) for e in span.events
            ],
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    class RedactingExporter(SpanExporter):
        """Spans pass the log redaction on their way out (URLs, SQL, exception events)."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return inner.export([redacted(span) for span in spans])

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return RedactingExporter()


# --- error tracking --------------------------------------------------------------------------

# Ids Sentry generates (hex): redaction could mistake a digit run in one for a card number.
_SENTRY_ID_KEYS = ("event_id", "trace_id", "span_id", "parent_span_id")


def _start_sentry(settings: Settings) -> Any:
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    assert settings.sentry_dsn is not None
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or settings.environment,
        release=f"tillpay@{__version__}",
        # Sentry's own filters first (data_collection supersedes send_default_pii in 2.x;
        # a category left out is collected): no user, cookies, bodies, SQL parameters or
        # frame locals (they hold keys and card data), headers and query parameters minus
        # Sentry's denylist. What is left is redacted in before_send.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist"}},
            "http_bodies": [],
            "url_query_params": {"mode": "denylist"},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
            "gen_ai": {"inputs": False, "outputs": False},
            "graphql": {"document": False, "variables": False},
        },
        max_request_body_size="never",
        include_local_variables=False,
        before_send=_scrub_event,
        before_send_transaction=_scrub_event,
        traces_sample_rate=settings.sentry_traces_sample_rate or None,
        # No sentry-trace/baggage headers on calls to payment providers and merchants.
        trace_propagation_targets=[],
        # Log lines become breadcrumbs (redacted with the event); errors are reported once,
        # where they are handled (kit.telemetry.report_exception), not again as log events.
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
    )
    return sentry_sdk


def _scrub_event(event: Any, hint: Any) -> Any:
    """Sentry's ``before_send``: the event through the log redaction, or nothing at all."""
    try:
        scrubbed = dict(redact_data(event))  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - never send what could not be redacted
        return None
    _restore_ids(event, scrubbed)
    if (ids := hooks.trace_ids()) is not None:
        scrubbed["tags"] = {**(scrubbed.get("tags") or {}), "trace_id": ids[0]}
    return scrubbed


def _restore_ids(original: Mapping[str, Any], scrubbed: dict[str, Any]) -> None:
    for key in _SENTRY_ID_KEYS:
        if key in original:
            scrubbed[key] = original[key]
    trace = (original.get("contexts") or {}).get("trace")
    if isinstance(trace, Mapping) and isinstance(scrubbed.get("contexts"), Mapping):
        contexts = dict(scrubbed["contexts"])
        contexts["trace"] = {**contexts.get("trace", {}), **_ids_of(trace)}
        scrubbed["contexts"] = contexts
    # A transaction's spans: the redacted copies sit at the same positions.
    spans = original.get("spans")
    if isinstance(spans, list) and isinstance(scrubbed.get("spans"), list):
        scrubbed["spans"] = [
            {**new, **_ids_of(old)}
            if isinstance(old, Mapping) and isinstance(new, Mapping)
            else new
            for old, new in zip(spans, scrubbed["spans"], strict=False)
        ]


def _ids_of(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in _SENTRY_ID_KEYS if key in item}
