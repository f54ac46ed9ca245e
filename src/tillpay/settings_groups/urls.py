"""The URL-scheme check shared by the database, Redis and broker settings."""

from __future__ import annotations

from pydantic import SecretStr


def check_url_scheme(value: SecretStr | None, schemes: tuple[str, ...]) -> SecretStr | None:
    """Refuse a URL whose scheme is not one of ``schemes`` (an empty URL passes)."""
    text = value.get_secret_value() if value is not None else ""
    if text and text.partition("://")[0].lower() not in schemes:
        # Only the scheme is named: the rest of the URL may carry a password.
        raise ValueError(f"unsupported scheme; use {' or '.join(f'`{s}://`' for s in schemes)}")
    return value
