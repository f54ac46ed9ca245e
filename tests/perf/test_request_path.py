"""Per-request work the stack does not need, found by inspecting the real app."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from starlette.routing import Match

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


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_no_two_routes_overlap_so_their_order_is_free() -> None:
    """Routers are included hottest first (app.py); that is safe only while every request
    path and method reaches the same route whatever the routers' order."""
    app = create_app(_base_settings())
    routes = list(_routes(app.routes))
    shadowed = []
    for route in routes:
        for method in sorted(route.methods or ()):
            scope = {"type": "http", "method": method, "path": _concrete(route.path)}
            matching = [r for r in routes if r.matches(scope)[0] == Match.FULL]
            # A literal path before a parameter in one module (`/v1/payments/providers`
            # before `/v1/payments/{payment_id}`) keeps its order whatever the routers' order.
            same_module = {r.endpoint.__module__ for r in matching} == {route.endpoint.__module__}
            if matching[0] is not route or (len(matching) > 1 and not same_module):
                shadowed.append(f"{method} {route.path}: {[r.path for r in matching]}")
    assert shadowed == []
