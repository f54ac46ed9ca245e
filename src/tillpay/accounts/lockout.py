"""Lockout of repeated failed credential checks (login, 2FA, step-up), keyed per account."""

from __future__ import annotations

from tillpay.accounts.runtime import AccountsRuntime
from tillpay.kit.errors import RateLimited


async def lockout_check(rt: AccountsRuntime, key: str) -> None:
    if rt.lockout is None:
        return
    remaining = await rt.lockout.check(key)
    if remaining:
        raise RateLimited(
            "Too many failed attempts; try again later.",
            code="account_locked",
            headers={"Retry-After": str(max(1, remaining))},
        )


async def lockout_failure(rt: AccountsRuntime, key: str) -> None:
    if rt.lockout is not None:
        await rt.lockout.failure(key)


async def lockout_success(rt: AccountsRuntime, key: str) -> None:
    if rt.lockout is not None:
        await rt.lockout.success(key)
