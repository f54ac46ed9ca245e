"""Typed application errors and their RFC 9457 ``application/problem+json`` rendering.

Services raise :class:`AppError` subclasses; the handlers installed by :func:`install`
turn them (and framework errors, validation errors and unexpected exceptions) into
problem documents. A problem never carries a stack trace, SQL, a path or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from traceback import walk_tb
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tillpay.kit.logging import get_logger
from tillpay.kit.telemetry import trace_ids

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tillpay.dev/problems/"

log = get_logger(__name__)


class AppError(Exception):
    """Base of every error a service may raise on purpose."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class CommittedRefusal(AppError):
    """A refusal whose writes must be kept (a failed login's audit row and lockout count).

    The request's unit of work commits on seeing it, then lets it propagate: the client
    gets ``error``'s problem document (same status, code, headers and body) as if it had
    been raised itself."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.detail, code=error.code, headers=error.headers, extra=error.extra)
        self.error = error
        self.status = error.status
        self.title = error.title


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="tillpay"'})
        super().__init__(detail, **kwargs)


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class InvalidStateTransition(Conflict):
    code, title = "invalid_state_transition", "Invalid state transition"


class Gone(AppError):
    status, code, title = 410, "gone", "Gone"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class Unprocessable(AppError):
    status, code, title = 422, "unprocessable", "Unprocessable request"


class RateLimited(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(AppError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


class UpstreamError(AppError):
    """A dependency (payment provider, mail server) failed; the outcome may be unknown."""

    status, code, title = 502, "upstream_error", "Upstream service error"


def _status_code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def problem_response(
    request_id: str | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Render one problem document. ``instance`` is the request id, for support look-ups."""
    body = problem_body(request_id, status=status, code=code, title=title, detail=detail)
    if extra:
        body.update(extra)
    return Response(
        content=orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=dict(headers or {}),
    )


def problem_body(
    request_id: str | None, *, status: int, code: str, title: str, detail: str
) -> dict[str, Any]:
    """The standard members of a problem document, plus ``trace_id`` while tracing is on
    (the trace of the request, for operators; ``instance`` stays the support reference)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": f"urn:request:{request_id}" if request_id else None,
    }
    if (ids := trace_ids()) is not None:
        body["trace_id"] = ids[0]
    return body


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """A field list without echoing input values (they may hold secrets)."""
    fields: list[dict[str, Any]] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        fields.append(
            {
                "field": ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc),
                "location": loc[0] if loc else "body",
                "message": str(error.get("msg", "invalid value")),
                "type": str(error.get("type", "value_error")),
            }
        )
    return fields


async def _app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return problem_response(
        _request_id(request),
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    # Framework details (e.g. "Not Found") are generic; never echo anything else.
    detail = exc.detail if isinstance(exc.detail, str) and status < 500 else phrase
    return problem_response(
        _request_id(request),
        status=status,
        code=_status_code(status),
        title=phrase,
        detail=detail,
        headers=exc.headers,
    )


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc.errors())
    # A body that is not valid JSON at all is a client error about syntax.
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(
            _request_id(request),
            status=400,
            code="malformed_json",
            title="Malformed JSON",
            detail="The request body is not valid JSON.",
        )
    return problem_response(
        _request_id(request),
        status=422,
        code="validation_error",
        title="Validation failed",
        detail="The request has invalid or missing fields.",
        extra={"errors": errors},
    )


def internal_error_response(request_id: str | None) -> Response:
    """The generic 500: nothing about the cause leaves the process."""
    return problem_response(
        request_id,
        status=500,
        code="internal_error",
        title="Internal server error",
        detail="An unexpected error occurred. Quote the instance when contacting support.",
    )


# PostgreSQL SQLSTATEs raised by text it cannot store (a NUL byte in a JSON string, say):
# the client's input is at fault, not the server.
_INVALID_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


def _sqlstate(exc: BaseException) -> str | None:
    original = getattr(exc, "orig", None)
    for candidate in (original, getattr(original, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


# Seconds a client is asked to wait when the database is unreachable or saturated.
DATABASE_RETRY_AFTER: Final = 5


def database_unavailable_response(request_id: str | None) -> Response:
    """The database cannot be reached (or its pool is exhausted): retry later."""
    return problem_response(
        request_id,
        status=503,
        code="database_unavailable",
        title="Service unavailable",
        detail="The database is temporarily unavailable; retry later.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def _is_unavailable(exc: Exception) -> bool:
    """Whether a database error means "cannot reach / talk to the database" rather than
    a bug in a statement: lost or refused connections, and timeouts."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if getattr(exc, "connection_invalidated", False):
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


async def _database_error_handler(request: Request, exc: Exception) -> Response:
    if _sqlstate(exc) in _INVALID_TEXT_SQLSTATES:
        return problem_response(
            _request_id(request),
            status=400,
            code="invalid_characters",
            title="Bad Request",
            detail="The request contains characters that cannot be stored.",
        )
    if _is_unavailable(exc):
        log.warning("db.unavailable", error_type=type(exc).__name__, sqlstate=_sqlstate(exc))
        return database_unavailable_response(_request_id(request))
    log.error("db.error", error_type=type(exc).__name__, sqlstate=_sqlstate(exc))
    return internal_error_response(_request_id(request))


async def _pool_timeout_handler(request: Request, exc: Exception) -> Response:
    log.warning("db.pool_timeout")
    return database_unavailable_response(_request_id(request))


def _raised_by_sqlalchemy(exc: BaseException) -> bool:
    return any(
        str(frame.f_globals.get("__name__", "")).startswith("sqlalchemy.")
        for frame, _ in walk_tb(exc.__traceback__)
    )


async def _os_error_handler(request: Request, exc: Exception) -> Response:
    # A refused or timed-out connect reaches us as a bare OSError (drivers raise it
    # before there is a DBAPI connection to wrap it); anything else stays a 500.
    if _raised_by_sqlalchemy(exc):
        log.warning("db.unavailable", error_type=type(exc).__name__)
        return database_unavailable_response(_request_id(request))
    log.error("http.os_error", error_type=type(exc).__name__, exc_info=exc)
    return internal_error_response(_request_id(request))


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    app.add_exception_handler(DBAPIError, _database_error_handler)
    app.add_exception_handler(PoolTimeout, _pool_timeout_handler)
    app.add_exception_handler(OSError, _os_error_handler)
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)


def encode_problem(body: Mapping[str, Any]) -> bytes:
    """Serialize a problem body (used by raw ASGI middleware that cannot use Response)."""
    return orjson.dumps(dict(body))
