"""Periodic jobs: what a job receives, and the registry every domain adds its jobs to.

A module registers a job with :func:`job` when it is imported; ``tillpay.worker`` imports
them all (``tillpay.jobs``) and runs the loop. The settings type is a parameter of
:class:`JobContext`, so this module knows no tillpay package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import httpx

from tillpay.kit.db import Database

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


JobFunc = Callable[[JobContext[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    name: str
    interval: float
    func: JobFunc
