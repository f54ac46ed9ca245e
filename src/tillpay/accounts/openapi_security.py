"""Who may call each operation, written into the OpenAPI document from the routes' own
dependencies (never a hand-kept list): public, signed-in people only, or people and
machine credentials holding the listed scopes.

Each authenticated operation gets ``security`` (OpenAPI 3.1 allows scope names on any
scheme) and ``x-tillpay-scopes`` (the scopes a machine credential needs; absent: people
only). tests/security/test_scope_inventory.py drives every operation from this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from tillpay.accounts.deps import (
    current_caller,
    current_principal,
    machine_scope,
    require_permission,
)

SCHEMES: dict[str, Any] = {
    "userSession": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A person's access token from `POST /v1/auth/login`.",
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`tp_live_…` / `tp_test_…`) from `POST /v1/admin/api-keys`; "
        "it may call only operations listing one of its scopes.",
    },
    "serviceToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT of at most 5 minutes signed by a shop backend named in "
        "`TILLPAY_SERVICE_TOKEN_ISSUERS` (docs/integration.md).",
    },
}


def access_of(dependant: Dependant) -> tuple[bool, frozenset[str] | None]:
    """Whether the route authenticates its caller, and the scopes a machine needs (None:
    machines may not call it). A route accepts machines only where every authorization
    dependency it has names scopes."""
    authenticated = False
    scopes: set[str] = set()
    machines = True
    user_only = False

    def walk(node: Dependant) -> None:
        nonlocal authenticated, machines, user_only
        call = node.call
        if isinstance(call, require_permission):
            if call.scopes is None:
                machines = False
            else:
                scopes.update(call.scopes)
        elif isinstance(call, machine_scope):
            scopes.update(call.scopes)
        if call is current_caller:
            authenticated = True
        elif call is current_principal:
            authenticated = user_only = True
        for sub in node.dependencies:
            walk(sub)

    walk(dependant)
    if not authenticated:
        return False, None
    if user_only or not machines or not scopes:
        return True, None
    return True, frozenset(scopes)


def annotate(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SCHEMES)
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        authenticated, scopes = access_of(route.dependant)
        if not authenticated:
            continue
        operations = document.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            if scopes is None:
                operation["security"] = [{"userSession": []}]
                continue
            names = sorted(scopes)
            operation["security"] = [
                {"userSession": []},
                {"apiKey": names},
                {"serviceToken": names},
            ]
            operation["x-tillpay-scopes"] = names
    return document


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` annotate the generated document (once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = annotate(app, generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
