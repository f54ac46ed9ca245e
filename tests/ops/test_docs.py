"""API docs: open in development, closed in production unless enabled explicitly."""

from __future__ import annotations

import json
import re
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


def _directives(header: str) -> dict[str, str]:
    parts = (p.strip().split(None, 1) for p in header.split(";") if p.strip())
    return {d[0]: (d[1] if len(d) > 1 else "") for d in parts}


async def test_docs_page_loads_nothing_from_a_cdn_and_runs_no_inline_script(
    make_client: ClientFactory,
) -> None:
    async with make_client(environment="development") as client:
        docs = await client.get("/docs")
    csp = _directives(docs.headers["content-security-policy"])
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert "http" not in docs.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert sources
    assert all(s.startswith("/docs/assets/") for s in sources), sources
    # No inline script: every <script> element has a src and an empty body.
    assert re.findall(r"<script[^>]*>([^<]*)</script>", docs.text) == ["", ""]


async def test_docs_assets_are_served_locally(make_client: ClientFactory) -> None:
    async with make_client(environment="development") as client:
        page = await client.get("/docs")
        for source in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            asset = await client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 100, source
        bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert "SwaggerUIBundle" in bundle.text
        assert (await client.get("/docs/assets/redoc.standalone.js")).status_code == 404
        assert (await client.get("/docs/assets/..%2Fcore.py")).status_code == 404


async def test_docs_can_be_turned_off(make_client: ClientFactory) -> None:
    async with make_client(docs_enabled=False) as client:
        for path in ("/docs", "/openapi.json", "/redoc", "/docs/assets/init.js"):
            assert (await client.get(path)).status_code == 404


def test_committed_openapi_document_is_up_to_date() -> None:
    app = create_app(Settings(environment="development", docs_enabled=True))
    current = json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    committed = (ROOT / "openapi.json").read_text(encoding="utf-8")
    assert committed == current, "run `tillpay openapi --output openapi.json`"
