"""API docs: open in development, closed in production unless enabled explicitly."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ClientFactory
from tillpay.app import create_app
from tillpay.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


async def test_docs_and_schema_are_served_in_development(make_client: ClientFactory) -> None:
    async with make_client(environment="development") as client:
        schema = await client.get("/openapi.json")
        docs = await client.get("/docs")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "tillpay"
    assert docs.status_code == 200
    assert "script-src https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]


async def test_docs_can_be_turned_off(make_client: ClientFactory) -> None:
    async with make_client(docs_enabled=False) as client:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert (await client.get(path)).status_code == 404


def test_committed_openapi_document_is_up_to_date() -> None:
    app = create_app(Settings(environment="development", docs_enabled=True))
    current = json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    committed = (ROOT / "openapi.json").read_text(encoding="utf-8")
    assert committed == current, "run `tillpay openapi --output openapi.json`"
