"""The ``tillpay`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tillpay.settings import ConfigurationError, Settings, load_settings

app = typer.Typer(
    name="tillpay",
    help="tillpay: a security-first e-commerce payments backend.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except (ConfigurationError, ValueError) as exc:
        typer.echo(f"tillpay: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


def _serve(settings: Settings, *, reload: bool = False) -> None:
    import uvicorn

    from tillpay.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # Our own middleware decides which proxies to trust; uvicorn's default trusts
        # 127.0.0.1, which would let anything local spoof client addresses.
        proxy_headers=False,
        server_header=False,
        date_header=True,
        access_log=False,
        log_config=None,
        reload=reload,
    )


@app.command()
def serve() -> None:
    """Serve the API with the configured settings (migrate first with `tillpay migrate`)."""
    _serve(_settings())


@app.command()
def dev() -> None:
    """Development start: migrate the SQLite database, load demo data and serve."""
    settings = _settings(demo_data=True)
    if settings.is_production:
        typer.echo("tillpay dev is for development; use `tillpay serve`.", err=True)
        raise typer.Exit(2)
    from tillpay import migrate as migrations

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(settings)
    typer.echo(f"tillpay: serving on http://{settings.host}:{settings.port} (docs at /docs)")
    _serve(settings)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations."""
    from tillpay import migrate as migrations

    migrations.upgrade(_settings(), revision)
    typer.echo(f"tillpay: database migrated to {revision}")


@app.command()
def worker() -> None:
    """Run the background worker as its own process."""
    from tillpay.kit.db import Database
    from tillpay.kit.logging import configure_logging
    from tillpay.worker import JobContext, Worker

    settings = _settings()
    configure_logging(json=settings.json_logs, level=settings.log_level)

    async def run() -> None:
        database = Database.from_settings(settings)
        runner = Worker(JobContext(settings=settings, database=database))
        try:
            await runner.run_forever()
        finally:
            await database.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@app.command()
def openapi(
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """Print (or write) the OpenAPI document."""
    from tillpay.app import create_app

    document = create_app(_settings(docs_enabled=True, environment="development")).openapi()
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


@app.command("config-docs")
def config_docs() -> None:
    """Print the configuration reference table (Markdown) for the README."""
    from tillpay.settings_docs import settings_table

    sys.stdout.write(settings_table())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
