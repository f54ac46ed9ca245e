"""The console's pages: thin routes (validate, call one query or service, render)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tillpay.console.nav import page
from tillpay.web.session import ConsolePrincipal

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def overview(request: Request, principal: ConsolePrincipal) -> Response:
    return page(request, principal, "console/overview.html", {})
