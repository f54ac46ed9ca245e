"""The house rules of the code layout (docs/architecture.md, "Layout"): small modules and
thin routes. The package dependency contract itself is `lint-imports` (dev.py check)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute

from tillpay.app import create_app
from tillpay.settings import Settings

SRC = Path(__file__).resolve().parents[2] / "src" / "tillpay"
MAX_MODULE_LINES = 500
MAX_ROUTE_LINES = 25


def _modules() -> Iterator[Path]:
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" not in path.relative_to(SRC).parts:
            yield path


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def _body_lines(func: Any) -> int:
    """Lines of a function's body, its docstring left out."""
    node = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(func)))).body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body:
        return 0
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(SRC)): lines
        for path in _modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_route_is_over_25_lines() -> None:
    app = create_app(Settings(environment="development"))
    routes = list(_routes(app.routes))
    assert len(routes) > 50  # the walk found the routers, not just the top level
    long = {
        f"{sorted(route.methods or ())} {route.path}": lines
        for route in routes
        if (lines := _body_lines(route.endpoint)) > MAX_ROUTE_LINES
    }
    assert long == {}
