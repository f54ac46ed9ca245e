"""The console's pages are served by the console setting, whatever the shop's."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts

from tillpay.app import create_app
from tillpay.settings import Settings


def _console_paths(settings: Settings) -> set[str]:
    return {
        path
        for context in iter_route_contexts(create_app(settings).routes)
        if (path := str(context.path)) == "/console" or path.startswith("/console/")
    }


def test_the_admin_areas_follow_the_console_setting_not_the_shop() -> None:
    areas = {"/console/orders", "/console/customers", "/console/audit", "/console/security"}
    assert areas <= _console_paths(Settings(environment="development", shop_enabled=False))
    assert areas <= _console_paths(Settings(environment="development", shop_enabled=True))
    assert _console_paths(Settings(environment="development", console_enabled=False)) == set()
