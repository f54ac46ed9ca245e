"""Whether a sign-in comes from somewhere the user signed in from before: the IP address
and a coarse device (browser family and system) of the user's earlier sessions, which
``auth_sessions`` keeps (revoked ones included: a device seen once stays known).

The device is coarse on purpose: a browser update changes the User-Agent's version
numbers, which must not make a known laptop look new."""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.models import AuthSession

# Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS: Final = (
    ("Edg", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS: Final = (
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("CrOS", "ChromeOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)
# A non-browser client is named by its first product token (curl, python-httpx, …).
_PRODUCT: Final = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,31}")
#: At most this many distinct User-Agents of one user at one IP are compared.
_COMPARED: Final = 200


def coarse_device(user_agent: str | None) -> str:
    """``"Firefox on Linux"``, ``"Safari on iOS"``, ``"curl"``, or ``"unknown device"``."""
    agent = user_agent or ""
    browser = next((name for marker, name in _BROWSERS if marker in agent), None)
    if browser is None:
        product = _PRODUCT.match(agent)
        browser = product.group(0) if product else None
    system = next((name for marker, name in _SYSTEMS if marker in agent), None)
    if browser is None:
        return f"unknown browser on {system}" if system else "unknown device"
    return f"{browser} on {system}" if system else browser


async def is_new_place(
    session: AsyncSession, user_id: str, *, ip: str | None, user_agent: str | None
) -> bool:
    """True when the user has signed in before, but never from this IP with this coarse
    device. Call it before the new session is added. An account's first sign-in is not
    new: there is nothing to compare it with, and its owner just registered."""
    earlier = await session.scalar(
        select(AuthSession.id).where(AuthSession.user_id == user_id).limit(1)
    )
    if earlier is None:
        return False
    same_ip = AuthSession.ip.is_(None) if ip is None else AuthSession.ip == ip
    agents = (
        await session.execute(
            select(AuthSession.user_agent)
            .where(AuthSession.user_id == user_id, same_ip)
            .group_by(AuthSession.user_agent)
            .limit(_COMPARED)
        )
    ).scalars()
    device = coarse_device(user_agent)
    return all(coarse_device(agent) != device for agent in agents)
