"""Mail templates (Jinja2): an HTML part, autoescaped, on one base layout, and a plain-text
part; amounts are formatted with their currency's exponent (integer minor units in, never
floats)."""

from __future__ import annotations

import functools
import html
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from tillpay.kit.money import EXPONENTS


def format_amount(amount: int, currency: str) -> str:
    """``1234567, "USD"`` → ``"12,345.67 USD"``; ``500, "JPY"`` → ``"500 JPY"``."""
    exponent = EXPONENTS.get(currency.upper(), 2)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**exponent)
    text = f"{major:,}"
    if exponent:
        text += f".{minor:0{exponent}d}"
    return f"{sign}{text} {currency.upper()}"


@functools.cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("tillpay.notifications", "templates"),
        # Every value in an .html template is escaped (a product title is a vendor's text);
        # .txt is not HTML, so nothing there is escaped.
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["money"] = format_amount
    # Catalog text is stored sanitized, with & < > as entities: back to the characters,
    # which the HTML part escapes again and the plain part shows as they are.
    environment.filters["unescape"] = html.unescape
    return environment


def render(name: str, **context: Any) -> tuple[str, str]:
    """(plain text, HTML) of template ``name`` (``name.txt`` and ``name.html``)."""
    text = _environment().get_template(f"{name}.txt").render(**context)
    html = _environment().get_template(f"{name}.html").render(**context)
    return text, html
