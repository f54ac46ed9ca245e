"""Programmatic Alembic: `tillpay migrate`, dev start-up and tests share this code."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config

from tillpay.settings import Settings


def alembic_config(settings: Settings) -> Config:
    """An Alembic config pointing at the packaged migrations and the configured database."""
    config = Config()
    config.set_main_option("script_location", str(files("tillpay") / "migrations"))
    config.set_main_option(
        "file_template",
        "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s",
    )
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (runs its own event loop: call from sync code)."""
    command.upgrade(alembic_config(settings), revision)


def check(settings: Settings) -> None:
    """Fail when the models and the migrations disagree (``alembic check``)."""
    command.check(alembic_config(settings))
