"""Periodic jobs: what a job receives, and the registry every domain adds its jobs to.

A module registers a job with :func:`job` when it is imported; ``tillpay.worker`` imports
them all (``tillpay.jobs``) and runs the loop. The settings type is a parameter of
:class:`JobContext`, so this module knows no tillpay package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.kit.db import Database, after_commit
from tillpay.kit.logging import get_logger

log = get_logger(__name__)

SettingsT = TypeVar("SettingsT")
T = TypeVar("T")


@dataclass
class JobContext(Generic[SettingsT]):
    """What a job receives: the settings, the database, where provider HTTP goes, and
    the collaborators every run in this process shares (:meth:`shared`)."""

    settings: SettingsT
    database: Database
    # Provider calls and the sandbox's webhook deliveries go through this transport;
    # None means the network. Tests route it to in-process emulators.
    provider_transport: httpx.AsyncBaseTransport | None = None
    _shared: dict[Callable[..., object], object] = field(
        default_factory=dict, init=False, repr=False
    )

    def shared(self, build: Callable[[JobContext[SettingsT]], T]) -> T:
        """The one object ``build`` makes for this context, built on first use (or the
        one given to :meth:`provide`)."""
        if build not in self._shared:
            self._shared[build] = build(self)
        return cast(T, self._shared[build])

    def provide(self, build: Callable[[JobContext[SettingsT]], T], value: T) -> None:
        """Use ``value`` as what ``build`` would make (the app shares its own runtime)."""
        self._shared[build] = value

    async def aclose(self) -> None:
        """Close what :meth:`shared` built that holds connections (has ``aclose``); what
        was given to :meth:`provide` stays its owner's to close."""
        built = [v for v in self._shared.values() if getattr(v, "owned_by_context", False)]
        self._shared.clear()
        for value in built:
            await cast(Any, value).aclose()


#: A job returns True when it stopped with more work due now (the worker runs it again at
#: once instead of waiting its interval); None or False otherwise.
JobFunc = Callable[[JobContext[Any]], Awaitable[bool | None]]

Item = TypeVar("Item")


async def for_each(
    items: Iterable[Item], func: Callable[[Item], Awaitable[object]], *, width: int
) -> None:
    """Run ``func`` on every item, at most ``width`` at once. One that raises is logged and
    holds none of the others back."""
    gate = asyncio.Semaphore(max(1, width))

    async def one(item: Item) -> None:
        async with gate:
            try:
                await func(item)
            except Exception:
                log.exception("jobs.item_failed")

    await asyncio.gather(*(one(item) for item in items))


@dataclass(frozen=True)
class Job:
    """A periodic job: ``func`` every ``interval`` seconds. An ``exclusive`` job runs on
    one worker at a time across every process, under a lease of ``lease`` seconds
    (``kit/leases.py``) that its runner renews while it runs; a killed runner blocks the
    job for at most that long."""

    name: str
    interval: float
    func: JobFunc
    exclusive: bool = False
    lease: float = 120.0


# Wake-up events of the workers running in this process, by job name.
_listening: dict[str, set[asyncio.Event]] = {}


def listen(name: str, event: asyncio.Event) -> None:
    """Have :func:`nudge` of job ``name`` set ``event`` (a worker's wake-up)."""
    _listening.setdefault(name, set()).add(event)


def unlisten(name: str, event: asyncio.Event) -> None:
    _listening.get(name, set()).discard(event)


def nudge(name: str) -> None:
    """Tell the workers in this process that job ``name`` has work now, so they run it at
    once instead of at its next interval (a no-op without one: other processes poll)."""
    for event in _listening.get(name, ()):
        event.set()


def nudge_after_commit(session: AsyncSession, name: str) -> None:
    """:func:`nudge` once the request's transaction has committed what the job will find."""

    async def wake() -> None:
        nudge(name)

    after_commit(session, wake)
