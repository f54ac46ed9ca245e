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


def _require_migrated(settings: Settings) -> None:
    """Refuse to serve a database whose schema is behind the packaged migrations."""
    from tillpay.kit.db import create_engine
    from tillpay.ops.schema import read_revisions, script_heads

    async def read() -> object:
        engine = create_engine(settings)
        try:
            return await read_revisions(engine, script_heads(settings))
        finally:
            await engine.dispose()

    try:
        revisions = asyncio.run(read())
    except Exception as exc:  # noqa: BLE001 - unreachable now; the app reports it (503)
        typer.echo(
            f"tillpay: warning: cannot read the database's schema revision "
            f"({type(exc).__name__}); serving, /readyz reports the database",
            err=True,
        )
        return
    from tillpay.ops.schema import Revisions

    assert isinstance(revisions, Revisions)
    if not revisions.current:
        typer.echo(f"tillpay: {revisions.describe()}", err=True)
        raise typer.Exit(2)


@app.command()
def serve() -> None:
    """Serve the API with the configured settings (migrate first with `tillpay migrate`)."""
    settings = _settings()
    _require_migrated(settings)
    _serve(settings)


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
    _require_migrated(settings)
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


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="The administrator's email.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an administrator (verified email; 2FA is enrolled at first sign-in)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        typer.echo("tillpay: an empty password is not allowed", err=True)
        raise typer.Exit(2)
    from tillpay.accounts import service
    from tillpay.accounts.runtime import build_runtime
    from tillpay.kit.db import Database
    from tillpay.kit.errors import AppError

    settings = _settings()

    async def run() -> str:
        database = Database.from_settings(settings)
        runtime = build_runtime(
            settings, database, mailer=settings.build_mailer(), limiter=None, redis_client=None
        )
        try:
            async with database.session() as session, session.begin():
                user = await service.create_admin(session, runtime, email=email, password=password)
                return user.id
        finally:
            await database.dispose()

    try:
        user_id = asyncio.run(run())
    except AppError as exc:
        typer.echo(f"tillpay: {exc.detail}", err=True)
        for item in exc.extra.get("errors", []):
            typer.echo(f"  - {item['message']}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"tillpay: administrator {user_id} created; enrol 2FA at first sign-in")


keys_app = typer.Typer(help="JWT signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key; older keys keep verifying until their tokens expire."""
    from datetime import timedelta

    from tillpay.accounts import keys
    from tillpay.kit.db import Database

    settings = _settings()
    keep_for = timedelta(
        seconds=max(settings.access_token_ttl_seconds, settings.mfa_token_ttl_seconds) + 60
    )

    async def run() -> str:
        database = Database.from_settings(settings)
        try:
            async with database.session() as session, session.begin():
                return await keys.rotate(
                    session, settings.secret_key.get_secret_value().encode(), keep_for=keep_for
                )
        finally:
            await database.dispose()

    kid = asyncio.run(run())
    typer.echo(f"tillpay: new signing key {kid}")


@app.command("config-docs")
def config_docs(
    update: Annotated[
        Path | None, typer.Option(help="Replace the table between the markers in this file.")
    ] = None,
) -> None:
    """Print (or update in a file) the configuration reference table for the README."""
    from tillpay.settings_docs import replace_table, settings_table

    if update is None:
        sys.stdout.write(settings_table())
        return
    update.write_text(replace_table(update.read_text(encoding="utf-8")), encoding="utf-8")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
