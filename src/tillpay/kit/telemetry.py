"""Hooks for tracing and error tracking: no-ops until ``tillpay/ops/telemetry.py`` fills them.

kit code (logging, problem responses, the catch-all, job runs) calls these without knowing
whether OpenTelemetry or Sentry is configured, and without importing either: when neither
is, every hook is one ``is None`` check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from structlog.typing import EventDict, WrappedLogger

__all__ = ["add_trace_ids", "install", "report_exception", "span", "trace_ids", "uninstall"]

# The current span's (trace id, span id) as hex, or None outside a valid span.
_ids: Callable[[], tuple[str, str] | None] | None = None
# Opens a span as the current one (an OpenTelemetry tracer's start_as_current_span).
_span: Callable[..., AbstractContextManager[Any]] | None = None
# Each is told about an exception handled as an unexpected failure.
_reporters: tuple[Callable[[BaseException], object], ...] = ()


def install(
    *,
    ids: Callable[[], tuple[str, str] | None] | None = None,
    span: Callable[..., AbstractContextManager[Any]] | None = None,
    reporters: tuple[Callable[[BaseException], object], ...] = (),
) -> None:
    """Switch the hooks on (``tillpay/ops/telemetry.py``); call :func:`uninstall` to undo."""
    global _ids, _span, _reporters
    _ids, _span, _reporters = ids, span, reporters


def uninstall() -> None:
    install()


def trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span in hex; None when tracing is off."""
    return None if _ids is None else _ids()


def add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: ``trace_id`` and ``span_id`` on every line logged inside a span.

    It runs after redaction: the ids are ours, and a hex id's digit runs can pass the
    Luhn check that card-number masking applies.
    """
    if _ids is not None and (ids := _ids()) is not None:
        event_dict["trace_id"], event_dict["span_id"] = ids
    return event_dict


def span(name: str, attributes: Mapping[str, str] | None = None) -> AbstractContextManager[Any]:
    """A span around a unit of work (a job run) when tracing is on, else nothing."""
    if _span is None:
        return nullcontext()
    return _span(name, attributes=attributes)


def report_exception(exc: BaseException) -> None:
    """Tell the error tracker and the current span about an unexpected failure that was
    handled (logged, answered with a 500, retried later) rather than raised."""
    for report in _reporters:
        try:
            report(exc)
        except Exception:  # noqa: BLE001, S112 - a broken tracker must not break the caller
            continue
