"""The ``tillpay`` command."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tillpay.settings import ConfigurationError, Settings, load_settings

if TYPE_CHECKING:
    from tillpay.kit.jobs import Job

app = typer.Typer(
    name="tillpay",
    help="tillpay: a security-first e-commerce payments backend.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: no box drawing and no `<bool>`/`<str>` type column.
    rich_markup_mode=None,
)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except (ConfigurationError, ValueError) as exc:
        typer.echo(f"tillpay: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


HostOption = Annotated[
    str | None,
    typer.Option(
        "--host", metavar="ADDRESS", help="Address to bind [default: TILLPAY_HOST, 127.0.0.1]."
    ),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        metavar="PORT",
        min=1,
        max=65535,
        help="Port to listen on [default: TILLPAY_PORT, 8000].",
    ),
]


def _listen_address(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    scheme = "https" if settings.tls_on else "http"
    return f"{scheme}://{host}:{settings.port}"


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """What `tillpay serve` passes to uvicorn (tests serve their own app with it)."""
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        # Our own middleware decides which proxies to trust; uvicorn's default trusts
        # 127.0.0.1, which would let anything local spoof client addresses.
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
        "access_log": False,
        "log_config": None,
    }
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        from tillpay.kit.http.tls_uvicorn import uvicorn_options as tls_options

        options.update(
            tls_options(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
        )
    return options


def _require_free_port(settings: Settings) -> None:
    """Fail with one line naming the flag when the address cannot be bound (uvicorn would
    log a traceback-like error and exit)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: TIME_WAIT leftovers do not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                hint = "choose another with --port or TILLPAY_PORT"
                reason = f"port {settings.port} is already in use"
            else:
                hint = "check --host or TILLPAY_HOST"
                reason = exc.strerror or type(exc).__name__
            typer.echo(
                f"tillpay: cannot listen on {settings.host}:{settings.port}: {reason}; {hint}",
                err=True,
            )
            raise typer.Exit(2) from None


def _serve(settings: Settings, *, workers: int = 1) -> None:
    import uvicorn

    from tillpay.app import create_app

    _require_free_port(settings)
    mtls = ", client certificates required" if settings.tls_client_ca_file else ""
    typer.echo(
        f"tillpay: serving on {_listen_address(settings)}{mtls} (docs at /docs when enabled)"
    )
    options = uvicorn_options(settings)
    if workers > 1:
        # Each worker process builds its app from the same environment.
        uvicorn.run("tillpay.app:create_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]


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


def _overrides(host: str | None, port: int | None) -> dict[str, object]:
    return {k: v for k, v in (("host", host), ("port", port)) if v is not None}


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[
        int, typer.Option("--workers", metavar="N", min=1, help="Worker processes.")
    ] = 1,
) -> None:
    """Serve the API (run `tillpay migrate` first).

    Uses the TILLPAY_* settings; refuses a database that is not at the latest migration.
    """
    settings = _settings(**_overrides(host, port))
    _require_migrated(settings)
    _serve(settings, workers=workers)


@app.command()
def dev(host: HostOption = None, port: PortOption = None) -> None:
    """Development server: migrate, load demo data, serve.

    Migrates the (SQLite) database, loads demo data and serves; not for production.
    """
    settings = _settings(demo_data=True, **_overrides(host, port))
    if settings.is_production:
        typer.echo("tillpay dev is for development; use `tillpay serve`.", err=True)
        raise typer.Exit(2)
    from tillpay import migrate as migrations

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(settings)
    _serve(settings)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(metavar="REVISION", show_default=False)] = "head",
) -> None:
    """Apply database migrations.

    Migrates up to REVISION (default: head, the latest).
    """
    from tillpay import migrate as migrations

    migrations.upgrade(_settings(), revision)
    typer.echo(f"tillpay: database migrated to {revision}")


@app.command()
def worker(
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            metavar="N",
            min=1,
            help="Worker processes; above 1 a supervisor runs N children.",
        ),
    ] = 1,
) -> None:
    """Run the background worker as its own process (or N of them).

    SIGTERM or SIGINT stops it gracefully: runs in flight finish, nothing new is claimed.
    With --concurrency N a supervisor forwards both to N worker processes and exits
    non-zero if one of them dies on its own (after stopping the others).
    """
    settings = _settings()
    _require_migrated(settings)
    if concurrency > 1:
        from tillpay.kit.supervisor import supervise

        raise typer.Exit(supervise([sys.executable, "-m", "tillpay.cli", "worker"], concurrency))
    _run_worker(settings)


def _run_worker(settings: Settings, jobs: list[Job] | None = None) -> None:
    """Run a worker until SIGTERM/SIGINT (``jobs``: the schedule unless given)."""
    from tillpay.worker import run_process

    run_process(settings, jobs)


@app.command()
def openapi(
    output: Annotated[Path | None, typer.Option(metavar="FILE", help="Write to this file.")] = None,
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
    email: Annotated[
        str, typer.Option(prompt=True, metavar="EMAIL", help="The administrator's email.")
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an administrator.

    The address counts as verified. The account has no 2FA yet: sign in to /console,
    which opens /console/security to set it up (administrator powers need it).
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        typer.echo("tillpay: an empty password is not allowed", err=True)
        raise typer.Exit(2)
    from tillpay.accounts import admin
    from tillpay.accounts.runtime import build_runtime
    from tillpay.kit.db import Database
    from tillpay.kit.errors import AppError
    from tillpay.notifications.mail import build_mailer

    settings = _settings()

    async def run() -> str:
        database = Database.from_settings(settings)
        runtime = build_runtime(settings, database, mailer=build_mailer(settings), limiter=None)
        try:
            async with database.session() as session, session.begin():
                user = await admin.create_admin(session, runtime, email=email, password=password)
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
    typer.echo(
        f"tillpay: administrator {user_id} created; sign in to /console and set up "
        "two-factor authentication at /console/security (administrator pages need it)"
    )


keys_app = typer.Typer(help="JWT signing keys.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new JWT signing key.

    Older keys keep verifying until their tokens expire.
    """
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


@app.command("check-config")
def check_config() -> None:
    """Check the configuration without starting anything.

    Reads the TILLPAY_* environment (and .env) as `tillpay serve` would and lists every
    problem, one per line; exit status 2 when there is one, 0 when the configuration
    would start. Production refusals and acknowledged risks are those of a real start.
    """
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        for problem in exc.problems:
            typer.echo(f"  - {problem}", err=True)
        count = len(exc.problems)
        typer.echo(f"tillpay: {count} configuration problem{'s' * (count != 1)}", err=True)
        raise typer.Exit(2) from None
    sqlite = settings.database_url.get_secret_value().startswith("sqlite")
    database = "SQLite" if sqlite else "PostgreSQL"
    typer.echo(
        f"tillpay: configuration OK (environment {settings.environment}, {database}, "
        f"Redis {'on' if settings.redis_url else 'off'}, "
        f"broker {'on' if settings.broker_url else 'off'})"
    )


certs_app = typer.Typer(help="TLS certificates.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(certs_app, name="certs")


@certs_app.command("dev")
def certs_dev(
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Directory to write the files to.")
    ],
    days: Annotated[
        int,
        typer.Option(
            "--days", metavar="N", min=1, max=3650, help="Server and client certificate lifetime."
        ),
    ] = 365,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Create a development CA, a localhost server and a client certificate.

    The CA is valid 10 years; keys are written 0600. Never use them in production.
    """
    from tillpay.kit.certs import CLIENT_NAME, write_dev_certificates

    try:
        write_dev_certificates(out, days=days, force=force)
    except FileExistsError as exc:
        typer.echo(f"tillpay: {out} already holds {exc}; --force replaces them", err=True)
        raise typer.Exit(2) from None
    where = out.resolve()
    typer.echo(f"tillpay: wrote a development CA, server and client certificate to {where}")
    typer.echo("Serve HTTPS requiring client certificates with:")
    typer.echo(f"  TILLPAY_TLS_CERT_FILE={where / 'server.pem'}")
    typer.echo(f"  TILLPAY_TLS_KEY_FILE={where / 'server-key.pem'}")
    typer.echo(f"  TILLPAY_TLS_CLIENT_CA_FILE={where / 'ca.pem'}")
    typer.echo(f"Then, as the client {CLIENT_NAME}:")
    typer.echo(
        f"  curl --cacert {where / 'ca.pem'} --cert {where / 'client.pem'} "
        f"--key {where / 'client-key.pem'} https://localhost:8000/healthz"
    )


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit hash chain from its first entry to its head.

    Exits 0 when intact (printing the head: keep it elsewhere to anchor the chain), 1 at
    the first broken link (which row, and whether it was modified, deleted or inserted).
    """
    from tillpay.audit.verify import ChainReport, verify_chain
    from tillpay.kit.db import Database

    async def run() -> ChainReport:
        database = Database.from_settings(_settings())
        try:
            async with database.read_connection() as conn:
                return await verify_chain(conn)
        finally:
            await database.dispose()

    report = asyncio.run(run())
    head = f"head seq {report.head_seq} hash {report.head_hash}"
    if report.broken is None:
        typer.echo(f"tillpay: audit chain intact: {report.checked} entries, {head}")
        return
    broken = report.broken
    where = f"seq {broken.seq} (id {broken.id})" if broken.seq is not None else "its end"
    typer.echo(
        f"tillpay: audit chain broken at {where}: {broken.kind}: {broken.reason}"
        f" ({report.checked} intact before it; {head})",
        err=True,
    )
    raise typer.Exit(1)


@app.command("config-docs")
def config_docs(
    update: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Replace the table between the markers in this file."),
    ] = None,
) -> None:
    """Print the configuration reference table.

    With --update, replace the table in that file instead.
    """
    from tillpay.settings_docs import replace_table, settings_table

    if update is None:
        sys.stdout.write(settings_table())
        return
    update.write_text(replace_table(update.read_text(encoding="utf-8")), encoding="utf-8")


@app.command("event-docs")
def event_docs(
    update: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Replace the table between the markers in this file."),
    ] = None,
) -> None:
    """Print the event catalogue table (docs/events.md).

    With --update, replace the table in that file instead.
    """
    from tillpay.events.catalogue import markdown_table, replace_table

    if update is None:
        sys.stdout.write(markdown_table())
        return
    update.write_text(replace_table(update.read_text(encoding="utf-8")), encoding="utf-8")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
