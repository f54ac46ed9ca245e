"""Refusals on browser paths as pages, not problem documents.

:func:`install` wraps the app's problem+json handlers (``kit.errors``): on a path of
:data:`PREFIXES` an :class:`AppError` (CSRF, 403, 404, 429, a service's refusal), a framework
``HTTPException`` or a form validation error renders ``error.html`` with the same status;
:class:`~tillpay.web.session.SeeOther` becomes a 303. The unit of work has already rolled
back (or, for a ``CommittedRefusal``, committed) when the handler runs, so a refusal shown
as a page never leaves a partial write.

A route whose form should be shown again with the error (a wrong password, an amount too
large) registers a renderer first: ``errors.on_error(request, lambda exc: render(...))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tillpay.kit.errors import AppError
from tillpay.web.session import SeeOther
from tillpay.web.templating import finish, render

PREFIXES: Final = ("/console", "/shop", "/web/")

FormRenderer = Callable[[AppError], Response]


class FormInvalid(AppError):
    status, code, title = 422, "validation_error", "Check the form"


def on_error(request: Request, renderer: FormRenderer) -> None:
    """Show a refusal of this request with ``renderer`` (the form again, with the message)."""
    request.state.web_on_error = renderer


def _is_web(request: Request) -> bool:
    path = request.url.path
    return path == "/console" or path.startswith(PREFIXES)


def error_page(request: Request, status: int, title: str, detail: str, code: str = "") -> Response:
    """``error.html``; ``code`` (the refusal's) lets the page offer the way out of it."""
    context = {"status": status, "title": title, "detail": detail, "code": code}
    return render(request, "error.html", context, status)


def _app_error_page(request: Request, exc: AppError) -> Response:
    if isinstance(exc, SeeOther):
        return finish(request, RedirectResponse(exc.location, status_code=303))
    renderer: FormRenderer | None = getattr(request.state, "web_on_error", None)
    if renderer is not None and exc.status in (400, 401, 403, 409, 422, 429):
        response = renderer(exc)
        response.status_code = exc.status
    else:
        response = error_page(request, exc.status, exc.title, exc.detail, exc.code)
    if exc.headers and "Retry-After" in exc.headers:
        response.headers["Retry-After"] = exc.headers["Retry-After"]
    return response


async def _delegate(handler: Any, request: Request, exc: Exception) -> Response:
    response = handler(request, exc)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    return response


def install(app: FastAPI) -> None:
    """Route browser paths' errors to pages; everything else keeps its problem+json."""
    app_handler = app.exception_handlers[AppError]
    http_handler = app.exception_handlers[StarletteHTTPException]
    validation_handler = app.exception_handlers[RequestValidationError]

    async def app_error(request: Request, exc: Exception) -> Response:
        if _is_web(request) and isinstance(exc, AppError):
            return _app_error_page(request, exc)
        return await _delegate(app_handler, request, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        if _is_web(request) and isinstance(exc, StarletteHTTPException):
            status = exc.status_code
            title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            detail = "This page does not exist." if status == 404 else "This request failed."
            return error_page(request, status, title or "Error", detail)
        return await _delegate(http_handler, request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        if _is_web(request):
            detail = "Some fields are missing or invalid. Go back, check them and try again."
            renderer: FormRenderer | None = getattr(request.state, "web_on_error", None)
            if renderer is not None:
                return _app_error_page(request, FormInvalid(detail))
            return error_page(request, 422, "Check the form", detail)
        return await _delegate(validation_handler, request, exc)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
