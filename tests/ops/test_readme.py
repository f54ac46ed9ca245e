"""The README's commands, links and API paths exist (so it cannot silently go stale)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from tillpay.app import create_app
from tillpay.cli import app as cli
from tillpay.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# The generated configuration table is checked by its own test (and names path prefixes).
README = re.sub(
    r"<!-- BEGIN SETTINGS TABLE.*?<!-- END SETTINGS TABLE -->",
    "",
    (ROOT / "README.md").read_text(encoding="utf-8"),
    flags=re.DOTALL,
)
# Fenced blocks and inline code spans: where commands and paths are written.
FENCED = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.DOTALL)
SPANS = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.DOTALL))
CODE = [*FENCED, *SPANS]


def _cli_commands() -> set[str]:
    root: Any = typer.main.get_command(cli)
    names = set()
    for name, command in root.commands.items():
        names.add(name)
        names.update(f"{name} {sub}" for sub in getattr(command, "commands", {}))
    return names


def _dev_py_commands() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("tillpay_dev_py_readme", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.COMMANDS)


def _route_paths() -> list[str]:
    # Every /v1 route is in the OpenAPI document (included routers are not flat app.routes).
    app = create_app(Settings(environment="development", docs_enabled=True))
    return list(app.openapi()["paths"])


def _mentions(pattern: str) -> list[str]:
    return sorted({m for block in CODE for m in re.findall(pattern, block)})


TILLPAY_COMMANDS = _mentions(r"\.venv/bin/tillpay ([a-z][a-z-]*(?: [a-z][a-z-]*)?)")
DEV_PY_COMMANDS = _mentions(r"python3 dev\.py ([a-z][a-z-]*)")
DOC_LINKS = sorted(set(re.findall(r"\b(docs/[\w./-]+\.md)\b", README)))
API_PATHS = sorted(set(re.findall(r"(/v1/[^\s`'\"?,;)]*)", README)))


def test_the_readme_mentions_what_the_tests_check() -> None:
    assert len(TILLPAY_COMMANDS) >= 8
    assert {"serve", "test", "check"} <= set(DEV_PY_COMMANDS)
    assert "docs/providers.md" in DOC_LINKS
    assert "/v1/payments/providers" in API_PATHS


@pytest.mark.parametrize("mention", TILLPAY_COMMANDS)
def test_every_documented_tillpay_command_exists(mention: str) -> None:
    commands = _cli_commands()
    words = mention.split()
    # "keys rotate" is a sub-command; "migrate head" is a command and its argument.
    assert mention in commands or words[0] in commands, mention
    if words[0] in {"keys"}:
        assert mention in commands, mention


@pytest.mark.parametrize("command", DEV_PY_COMMANDS)
def test_every_documented_dev_py_command_exists(command: str) -> None:
    assert command in _dev_py_commands()


@pytest.mark.parametrize("link", DOC_LINKS)
def test_every_linked_doc_exists(link: str) -> None:
    assert (ROOT / link).is_file(), link


def _segment_matches(documented: str, actual: str) -> bool:
    if actual.startswith("{"):
        return bool(documented)  # a parameter: any placeholder or example value
    return documented == actual


def _documented_path_exists(path: str, routes: list[str]) -> bool:
    path = path.rstrip(".:")
    if path.endswith("/…"):  # "/v1/admin/…": some route under the prefix
        return any(route.startswith(path.removesuffix("…")) for route in routes)
    wanted = path.strip("/").split("/")
    for route in routes:
        segments = route.strip("/").split("/")
        if len(segments) == len(wanted) and all(
            _segment_matches(d, a) for d, a in zip(wanted, segments, strict=True)
        ):
            return True
    return False


@pytest.mark.parametrize("path", API_PATHS)
def test_every_documented_api_path_exists(path: str) -> None:
    assert _documented_path_exists(path, _route_paths()), path


def test_shell_examples_need_nothing_outside_python_and_the_venv() -> None:
    for block in FENCED:
        for line in block.splitlines():
            assert not re.match(r"\s*tillpay\s", line), f"use .venv/bin/tillpay: {line}"
            assert "uuidgen" not in line, line
