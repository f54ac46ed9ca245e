"""``/shop/login`` (password, then a 2FA code), ``/shop/register``, ``/shop/logout`` and
the resend of the verification mail: thin routes over the accounts services, so the
API's lockout, ``RateLimit("auth")``, audit entries and no-enumeration answers apply."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts import login as signin
from tillpay.accounts import registration, sessions
from tillpay.accounts.deps import Runtime
from tillpay.accounts.errors import Outcome
from tillpay.accounts.models import AuthSession, User
from tillpay.accounts.permissions import Permission, permissions_for
from tillpay.accounts.responses import deliver
from tillpay.accounts.sessions import IssuedSession, revoke_sessions_by_id
from tillpay.kit.db import DbSession
from tillpay.kit.errors import AppError, CommittedRefusal, Forbidden
from tillpay.kit.http._asgi import client_ip
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.shop import session as shop_session
from tillpay.shop.routes import page
from tillpay.shop.session import MaybeShopper, Shopper
from tillpay.web import csrf, errors
from tillpay.web.templating import NOTICES, redirect, safe_next

router = APIRouter(prefix="/shop", include_in_schema=False)

AnonCsrf = [Depends(RateLimit("auth")), Depends(csrf.require_anonymous_csrf)]
Next = Annotated[str | None, Query(max_length=2000)]
NextField = Annotated[str, Form(max_length=2000)]
Email = Annotated[str, Form(min_length=3, max_length=320)]
Password = Annotated[str, Form(min_length=1, max_length=1024)]

NOTICES.update(
    {
        "shop_signed_out": "You have signed out. See you soon.",
        "shop_registered": "Account created. Check your inbox for the confirmation link, "
        "then sign in.",
        "shop_verification_sent": "We sent a new confirmation link to your email address.",
    }
)


class NotACustomer(Forbidden):
    code, title = "shop_customers_only", "Customer accounts only"

    def __init__(self) -> None:
        super().__init__("The shop is for customer accounts; staff use the console.")


def _home(next_path: str | None) -> str:
    return safe_next(next_path, "/shop") if (next_path or "").startswith("/shop") else "/shop"


def _login_page(
    request: Request, next_path: str, *, error: str | None = None, email: str = ""
) -> Response:
    context = {"next": next_path, "error": error, "email": email}
    return page(request, None, "shop/login.html", context, 200 if error is None else 401)


async def _open(
    request: Request, session: AsyncSession, rt: Runtime, issued: IssuedSession
) -> None:
    """Open the shop cookie for a session the sign-in service started: customers only
    (the cart and orders are theirs); anyone else's session is revoked at once."""
    row = (
        await session.execute(
            select(User.id, User.role, User.email)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(AuthSession.id == issued.session_id)
        )
    ).one()
    if Permission.CART_USE not in permissions_for(row.role):
        await revoke_sessions_by_id(session, rt, [issued.session_id], reason="shop_refused")
        raise CommittedRefusal(NotACustomer())
    shop_session.start(
        request, session_id=issued.session_id, user_id=row.id, role=row.role.value, email=row.email
    )


@router.get("/login")
async def login_page(request: Request, shopper: MaybeShopper, next: Next = None) -> Response:
    target = _home(next)
    if shopper is not None:
        return redirect(request, target)
    csrf.bind_anonymous(request)
    return _login_page(request, target)


@router.post("/login", dependencies=AnonCsrf)
async def login_submit(
    request: Request,
    session: DbSession,
    rt: Runtime,
    email: Email,
    password: Password,
    next: NextField = "/shop",
) -> Response:
    target = _home(next)
    errors.on_error(request, lambda e: _login_page(request, target, error=e.detail, email=email))
    result = await signin.login(
        session,
        rt,
        email=email,
        password=password,
        ip=client_ip(request.scope),
        user_agent=request.headers.get("user-agent"),
    )
    if not isinstance(result, IssuedSession):
        context = {"next": target, "mfa_token": result["mfa_token"], "error": None}
        return page(request, None, "shop/login_code.html", context)
    await _open(request, session, rt, result)
    return redirect(request, target)


@router.post("/login/code", dependencies=AnonCsrf)
async def login_code_submit(
    request: Request,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
    mfa_token: Annotated[str, Form(min_length=16, max_length=4096)],
    code: Annotated[str, Form(min_length=6, max_length=32)],
    next: NextField = "/shop",
) -> Response:
    target = _home(next)

    def again(exc: AppError) -> Response:
        if exc.code == "invalid_mfa_token":  # the pending sign-in expired: start over
            return _login_page(request, target, error=exc.detail)
        context = {"next": target, "mfa_token": mfa_token, "error": exc.detail}
        return page(request, None, "shop/login_code.html", context)

    errors.on_error(request, again)
    code = code.replace(" ", "")
    totp = code if code.isdigit() and len(code) == 6 else None
    outcome = await signin.login_mfa(
        session,
        rt,
        mfa_token=mfa_token,
        code=totp,
        recovery_code=None if totp else code,
        ip=client_ip(request.scope),
        user_agent=request.headers.get("user-agent"),
    )
    await _open(request, session, rt, outcome.payload)
    deliver(rt, background, Outcome(mail=list(outcome.mail)))
    return redirect(request, target)


def _register_page(request: Request, *, error: str | None = None, email: str = "") -> Response:
    return page(request, None, "shop/register.html", {"error": error, "email": email})


@router.get("/register")
async def register_page(request: Request, shopper: MaybeShopper) -> Response:
    if shopper is not None:
        return redirect(request, "/shop")
    csrf.bind_anonymous(request)
    return _register_page(request)


@router.post("/register", dependencies=AnonCsrf)
async def register_submit(
    request: Request,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
    email: Email,
    password: Password,
) -> Response:
    errors.on_error(request, lambda e: _register_page(request, error=e.detail, email=email))
    outcome = await registration.register(
        session, rt, email=email, password=password, ip=client_ip(request.scope)
    )
    deliver(rt, background, outcome)
    # The same answer whether the address was new or taken (no account enumeration).
    return redirect(request, "/shop/registered")


@router.get("/registered")
async def registered(request: Request) -> Response:
    csrf.bind_anonymous(request)
    return page(request, None, "shop/registered.html", {"dev_mailbox": _dev_mailbox(request)})


def _dev_mailbox(request: Request) -> bool:
    # The viewer is served in development only (app.py); elsewhere mail really leaves.
    return bool(request.app.state.settings.environment == "development")


@router.post("/verify/resend", dependencies=[Depends(RateLimit("auth"))])
async def resend_verification(
    request: Request,
    shopper: Shopper,
    session: DbSession,
    rt: Runtime,
    background: BackgroundTasks,
) -> Response:
    deliver(rt, background, await registration.resend_verification(session, rt, shopper))
    return redirect(request, "/shop/cart", notice="shop_verification_sent")


@router.post("/logout")
async def logout(
    request: Request, shopper: MaybeShopper, session: DbSession, rt: Runtime
) -> Response:
    if shopper is not None:  # its CSRF token was checked with the session
        await sessions.logout(session, rt, shopper)
    shop_session.clear(request)
    return redirect(request, "/shop", notice="shop_signed_out")
