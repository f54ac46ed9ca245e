"""HTTP face of the sandbox PSP: its API (``/sandbox/api``, what tillpay's sandbox adapter
calls, bearer key) and its hosted checkout page (``/sandbox/checkout``). The rules are in
:mod:`tillpay.sandbox.psp`, the HTML in :mod:`tillpay.sandbox.page`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Header, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tillpay.kit.db import DbSession
from tillpay.kit.errors import Unauthorized
from tillpay.sandbox import page as pages
from tillpay.sandbox import psp
from tillpay.sandbox.psp import RefundIn, SessionIn

api = APIRouter(prefix="/sandbox/api", tags=["sandbox"], include_in_schema=False)
page = APIRouter(prefix="/sandbox/checkout", tags=["sandbox"], include_in_schema=False)


def _authorize(request: Request, authorization: str | None) -> None:
    expected = f"Bearer {psp.api_key(request.app.state.settings)}".encode()
    if not hmac.compare_digest((authorization or "").encode(), expected):
        raise Unauthorized("Invalid sandbox API key.")


@api.post("/sessions")
async def create_session(
    body: SessionIn,
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Idempotent on ``reference``: the existing session comes back for a repeat."""
    _authorize(request, authorization)
    payload, created = await psp.open_session(session, request.app.state.settings, body)
    return JSONResponse(payload, status_code=201 if created else 200)


@api.get("/sessions/by-reference/{reference}")
async def get_session(
    reference: Annotated[str, Path(max_length=80)],
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    _authorize(request, authorization)
    return JSONResponse(await psp.read_session(session, request.app.state.settings, reference))


@api.post("/sessions/{session_id}/refunds")
async def refund_session(
    session_id: Annotated[str, Path(max_length=40)],
    body: RefundIn,
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> JSONResponse:
    _authorize(request, authorization)
    settings = request.app.state.settings
    payload, created = await psp.refund_session(
        session, settings, session_id, body.amount, idempotency_key
    )
    return JSONResponse(payload, status_code=201 if created else 200)


@api.get("/refunds/{refund_id}")
async def get_refund(
    refund_id: Annotated[str, Path(max_length=40)],
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    _authorize(request, authorization)
    return JSONResponse(await psp.read_refund(session, refund_id))


@page.get("/{session_id}")
async def checkout_page(
    session_id: Annotated[str, Path(max_length=40)], session: DbSession
) -> HTMLResponse:
    row = await psp.session_for_page(session, session_id)
    if row is None:
        return pages.not_found()
    return pages.checkout_form(row) if psp.is_open(row) else pages.closed(row)


@page.post("/{session_id}")
async def submit_page(
    session_id: Annotated[str, Path(max_length=40)],
    request: Request,
    session: DbSession,
    card_number: Annotated[str, Form(max_length=32)],
) -> Response:
    """Pay with the test card, then send the browser back to tillpay's return URL."""
    row = await psp.session_for_page(session, session_id, lock=True)
    if row is None:
        return pages.not_found()
    if not psp.is_open(row):
        return pages.closed(row, status=409)
    psp.pay_with_card(session, request.app.state.settings, row, card_number)
    return RedirectResponse(row.return_url, status_code=303)
