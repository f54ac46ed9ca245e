"""Per-request work the stack does not need, found by inspecting the real app."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant

from tests.conftest import _base_settings
from tests.foundation.test_layout import _routes
from tillpay.app import create_app


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _is_async(call: Any) -> bool:
    # A dependency is a function, or an instance whose class defines an async __call__.
    target = call if inspect.isfunction(call) else type(call).__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_no_route_runs_a_sync_dependency_or_endpoint() -> None:
    """FastAPI runs a plain `def` dependency or endpoint in a worker thread: a thread-pool
    hop on every request for what is usually one attribute read."""
    app = create_app(_base_settings())
    sync: set[str] = set()
    routes = list(_routes(app.routes))
    assert len(routes) > 50
    for route in routes:
        for dependant in (route.dependant, *_dependencies(route.dependant)):
            if dependant.call is not None and not _is_async(dependant.call):
                sync.add(f"{route.path}: {getattr(dependant.call, '__qualname__', dependant.call)}")
    assert sorted(sync) == []
