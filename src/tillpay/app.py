"""Application factory: settings → middleware perimeter → routers → lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as redis_asyncio
from fastapi import FastAPI
from starlette.middleware import Middleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tillpay import __version__
from tillpay.accounts import openapi_security
from tillpay.accounts import pages as accounts_pages
from tillpay.accounts import routes as accounts_routes
from tillpay.accounts.runtime import build_runtime
from tillpay.admin import routes as admin_routes
from tillpay.carts import routes as carts_routes
from tillpay.catalog import routes as catalog_routes
from tillpay.console import activity as console_activity
from tillpay.console import areas as console_areas
from tillpay.console import auth_routes as console_auth_routes
from tillpay.console import events as console_events
from tillpay.console import routes as console_routes
from tillpay.console import security as console_security
from tillpay.console import webhooks as console_webhooks
from tillpay.credentials import routes as credentials_routes
from tillpay.credentials.runtime import Credentials
from tillpay.hub import routes as hub_routes
from tillpay.kit import errors
from tillpay.kit.crypto import derive_key
from tillpay.kit.db import Database
from tillpay.kit.http.access_log import AccessLogMiddleware
from tillpay.kit.http.catch_all import CatchAllMiddleware
from tillpay.kit.http.cors import ProblemCORSMiddleware
from tillpay.kit.http.guards import (
    BodyLimitMiddleware,
    JsonContentTypeMiddleware,
    MethodGuardMiddleware,
    NulByteGuardMiddleware,
    TrustedHostMiddleware,
)
from tillpay.kit.http.ratelimit import GLOBAL_POLICY, GlobalRateLimitMiddleware
from tillpay.kit.http.request_id import RequestIdMiddleware
from tillpay.kit.http.schema_guard import SchemaGuardMiddleware
from tillpay.kit.http.security_headers import SecurityHeadersMiddleware
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import configure_logging, get_logger
from tillpay.kit.memory import return_large_blocks_to_the_system
from tillpay.kit.metrics import Metrics
from tillpay.kit.ratelimit import RateLimiter
from tillpay.kit.redis_pool import bounded_pool
from tillpay.merchant_webhooks import feed_routes
from tillpay.merchant_webhooks import routes as merchant_webhook_routes
from tillpay.notifications import dev_mailbox
from tillpay.notifications.mail import build_mailer
from tillpay.ops import docs as docs_routes
from tillpay.ops import telemetry as telemetry_setup
from tillpay.ops.docs import ASSETS as DOCS_ASSETS
from tillpay.ops.docs import ASSETS_PREFIX
from tillpay.ops.routes import router as ops_router
from tillpay.ops.schema import SchemaState, script_heads
from tillpay.orders import routes as orders_routes
from tillpay.payments import headless_routes
from tillpay.payments import routes as payments_routes
from tillpay.payments.jobs import payments_runtime
from tillpay.payments.providers import razorpay_routes
from tillpay.payments.runtime import build_payments_runtime
from tillpay.realtime import routes as realtime_routes
from tillpay.realtime.bus import Bus, LocalBus, channel_of, listen
from tillpay.realtime.hub import Hub, HubMetrics
from tillpay.realtime.jobs import bus_of
from tillpay.sandbox import routes as sandbox_routes
from tillpay.settings import Settings, load_settings
from tillpay.shop import auth_routes as shop_auth_routes
from tillpay.shop import order_routes as shop_order_routes
from tillpay.shop import routes as shop_routes
from tillpay.web import assets as web_assets
from tillpay.web import errors as web_errors
from tillpay.worker import Worker

log = get_logger(__name__)

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Paths that touch no table, served even when the schema is behind.
SCHEMA_EXEMPT_PATHS = (
    OPS_PATHS
    | {"/docs", "/openapi.json"}
    | {f"{ASSETS_PREFIX}/{n}" for n in DOCS_ASSETS}
    | web_assets.URLS
)
# Paths whose POST bodies are not JSON (HTML form posts of hosted pages).
NON_JSON_PREFIXES: tuple[str, ...] = ("/sandbox/checkout/", "/account/", "/console/", "/shop/")


def _new_limiter(settings: Settings) -> RateLimiter:
    """A limiter on the configured storage: Redis when set (shared), else memory."""
    storage = "memory://"
    if settings.redis_url is not None:
        storage = settings.redis_url.get_secret_value()
    return RateLimiter(
        storage,
        fail_open=settings.ratelimit_fail_open,
        socket_timeout=settings.ratelimit_redis_timeout_seconds,
        # A key of its own (any secret length; the keyed hash takes 16-64 bytes).
        key_secret=derive_key(settings.secret_key.get_secret_value().encode(), "ratelimit-keys"),
        key_prefix=f"{settings.redis_key_prefix}:rl",
        pool_size=settings.redis_pool_size,
        pool_timeout=settings.redis_pool_timeout_seconds,
    )


def _build_ratelimiter(settings: Settings) -> RateLimiter | None:
    if not settings.ratelimit_enabled:
        return None
    limiter = _new_limiter(settings)
    limiter.register(GLOBAL_POLICY, settings.ratelimit_global)
    for name, spec in settings.ratelimit_policies.items():
        limiter.register(name, spec)
    return limiter


def _middleware(
    settings: Settings, metrics: Metrics, limiter: RateLimiter | None
) -> list[Middleware]:
    """The perimeter, outermost first."""
    stack = [
        Middleware(
            RequestIdMiddleware,
            trusted_proxies=settings.trusted_proxies,
            header_name="X-Request-ID",
        ),
        Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies),
        Middleware(AccessLogMiddleware, metrics=metrics, skip_paths=OPS_PATHS),
        Middleware(SecurityHeadersMiddleware, hsts_max_age=settings.hsts_max_age),
        Middleware(CatchAllMiddleware),
        Middleware(MethodGuardMiddleware),
        Middleware(NulByteGuardMiddleware),
        Middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts),
        Middleware(
            ProblemCORSMiddleware,
            origins=settings.cors_allow_origins,
            allow_credentials=settings.cors_allow_credentials,
        ),
    ]
    if limiter is not None:
        stack.append(Middleware(GlobalRateLimitMiddleware, limiter=limiter, exempt_paths=OPS_PATHS))
    stack += [
        Middleware(
            BodyLimitMiddleware,
            default_limit=settings.body_limit_bytes,
            limits=settings.body_limits,
        ),
        Middleware(JsonContentTypeMiddleware, exempt_prefixes=NON_JSON_PREFIXES),
        Middleware(SchemaGuardMiddleware, exempt_paths=SCHEMA_EXEMPT_PATHS),
    ]
    return stack


def create_app(
    settings: Settings | None = None,
    *,
    provider_transport: httpx.AsyncBaseTransport | None = None,
    database: Database | None = None,
) -> FastAPI:
    """Build a tillpay application. Resources are opened by the lifespan, not here.

    ``provider_transport`` carries provider HTTP and the sandbox's webhook deliveries
    (None: the network); tests route it to in-process emulators. ``database`` is an open
    database of the configured URL to use instead of a new one (None: the lifespan opens
    and disposes its own); its owner disposes it. Tests share one per database across
    their apps, so SQLAlchemy's compiled statements outlive a single test.
    """
    settings = settings or load_settings()
    configure_logging(json=settings.json_logs, level=settings.log_level)
    # Tracing and error tracking, when configured: started here because the app's
    # middleware is instrumented as it is built; flushed and undone when the lifespan ends.
    telemetry = telemetry_setup.start(settings)
    metrics = Metrics()
    limiter = _build_ratelimiter(settings)
    given_database = database

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Argon2's 19 MiB blocks must not stay resident in every thread that hashed.
        return_large_blocks_to_the_system()
        database = given_database or Database.from_settings(settings)
        telemetry.instrument_database(database)
        metrics.db_pool_size.set(settings.database_pool_size)
        redis_client = (
            redis_asyncio.Redis.from_pool(
                bounded_pool(
                    settings.redis_url.get_secret_value(),
                    size=settings.redis_pool_size,
                    wait_seconds=settings.redis_pool_timeout_seconds,
                    socket_timeout=2.0,
                )
            )
            if settings.redis_url is not None
            else None
        )
        app.state.database = database
        app.state.redis = redis_client
        # Once here, not per request: later requests read the cached answer.
        schema = SchemaState(database.engine, script_heads(settings))
        await schema.check()
        app.state.schema = schema
        # Account abuse guards (login lockout, per-address mail budget) have their own
        # store: they must hold even with per-IP rate limiting off.
        lockout_store = _new_limiter(settings)
        lockout_store.register("account_mail", settings.ratelimit_policies["account_mail"])
        accounts = build_runtime(
            settings,
            database,
            mailer=build_mailer(settings),
            limiter=lockout_store,
        )
        await accounts.keys.start()
        app.state.accounts = accounts
        credentials = Credentials.from_settings(settings, database)
        app.state.credentials = credentials
        payments = build_payments_runtime(settings, database, transport=provider_transport)
        app.state.payments = payments
        hub = Hub(
            max_per_user=settings.realtime_max_connections_per_user,
            queue_size=settings.realtime_queue_size,
        )
        app.state.realtime = hub
        listener: asyncio.Task[None] | None = None
        if settings.realtime_enabled and settings.redis_url is not None:
            first_attempt = asyncio.Event()
            listener = asyncio.create_task(
                listen(
                    settings.redis_url.get_secret_value(),
                    channel_of(settings.redis_key_prefix),
                    hub,
                    first_attempt=first_attempt,
                ),
                name="realtime:listen",
            )
            # Subscribed before the app serves, so no event published after start is missed.
            # A Redis that refuses does not hold the start up (the listener reconnects in
            # the background), nor does one that does not answer for 5 s.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_attempt.wait(), timeout=5.0)
        elif settings.realtime_enabled and not settings.worker_in_process:
            log.warning(
                "realtime.no_bus",
                hint="realtime needs TILLPAY_REDIS_URL when the worker runs in its own process",
            )
        worker: Worker | None = None
        if settings.worker_in_process:
            context = JobContext(settings, database, provider_transport=provider_transport)
            context.provide(payments_runtime, payments)
            if settings.redis_url is None:
                # No Redis: this worker's realtime pushes go straight to this app's sockets.
                local: Bus | None = LocalBus(hub)
                context.provide(bus_of, local)
            worker = Worker(context)
            worker.start()
        if settings.demo_data:
            from tillpay.demo import load_demo_data

            await load_demo_data(settings, database)
        log.info("app.started", environment=settings.environment, version=__version__)
        try:
            yield {}
        finally:
            await accounts.keys.stop()
            await credentials.aclose()
            await payments.aclose()
            if worker is not None:
                await worker.stop()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if limiter is not None:
                await limiter.close()
            await lockout_store.close()
            if redis_client is not None:
                await redis_client.aclose()
            if given_database is None:
                await database.dispose()
            log.info("app.stopped")
            telemetry.shutdown()

    app = FastAPI(
        title="tillpay",
        version=__version__,
        summary="Security-first e-commerce payments backend.",
        description=(
            "Accounts, catalog, cart, orders and payments (Stripe, Paystack, Razorpay, "
            "Cryptomus, sandbox) behind one JSON API. Errors are `application/problem+json` "
            "(RFC 9457)."
        ),
        lifespan=lifespan,
        middleware=_middleware(settings, metrics, limiter),
        openapi_url="/openapi.json" if settings.docs_on else None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    telemetry.instrument_app(app)
    # Read when scraped: the hub of the running lifespan, none before it started.
    metrics.registry.register(HubMetrics(lambda: getattr(app.state, "realtime", None)))
    app.state.ratelimiter = limiter
    errors.install(app)
    # Browser paths (/console, /shop, /web/) answer refusals as pages, not problem+json.
    web_errors.install(app)
    # Hottest first: FastAPI tries routes in order, at ~15 function calls for every route
    # passed over (measured: order reads ~20 % cheaper than with orders included 9th).
    # No two routes overlap (tests/perf/test_request_path.py), so order changes nothing else.
    hot = [
        orders_routes.router,
        catalog_routes.router,
        accounts_routes.me,
        carts_routes.router,
        payments_routes.router,
        payments_routes.webhooks,
    ]
    if settings.sandbox_on:
        hot += [sandbox_routes.api, sandbox_routes.page]
    rest = [
        accounts_routes.auth,
        razorpay_routes.router,
        accounts_routes.wellknown,
        accounts_pages.router,
        orders_routes.admin,
        payments_routes.admin,
        headless_routes.router,
        accounts_routes.admin,
        credentials_routes.router,
        admin_routes.router,
        merchant_webhook_routes.router,
        feed_routes.router,
        hub_routes.router,
        ops_router,
    ]
    if settings.realtime_enabled:
        rest.append(realtime_routes.router)
    if settings.console_enabled or settings.shop_on:
        rest.append(web_assets.router)
    if settings.console_enabled:
        rest += [console_auth_routes.router, console_routes.router, console_security.router]
        # Provider events, merchant webhooks, the activity feed (docs/console.md).
        rest += [console_events.router, console_webhooks.router, console_activity.router]
        rest.append(console_areas.router)  # orders, customers, … audit (console/areas.py)
    if settings.shop_on:
        # The demo storefront (docs/console.md): off in production unless enabled.
        rest += [shop_routes.router, shop_auth_routes.router, shop_order_routes.router]
    if settings.docs_on:
        rest.append(docs_routes.router)
    if settings.environment == "development":
        # The mailbox viewer shows every mail, links with tokens included: never served
        # outside development, whatever else is configured.
        rest.append(dev_mailbox.router)
    # The routes themselves, not include_router: an included router's routes are rebuilt
    # for every app (signatures, pydantic fields: ~25 ms per app, paid again by every test's
    # app) and matched through a nested layer per request; these are complete as declared
    # (prefix, tags, dependencies), and create_app passes nothing at inclusion. The price:
    # app.dependency_overrides does not reach them (tillpay uses none).
    for router in (*hot, *rest):
        app.router.routes.extend(router.routes)
    openapi_security.install(app)

    return app
