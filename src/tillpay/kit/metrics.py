"""Prometheus metrics. Each application owns its registry, so several apps (tests, or an
API and a worker in one process) never collide on global collectors."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The collectors tillpay exposes at ``/metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tillpay_http_requests",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tillpay_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "tillpay_http_requests_in_flight",
            "HTTP requests being served.",
            registry=self.registry,
        )
        self.db_pool_size = Gauge(
            "tillpay_db_pool_size", "Configured database pool size.", registry=self.registry
        )
        self.db_pool_checked_out = Gauge(
            "tillpay_db_pool_checked_out",
            "Database connections currently in use.",
            registry=self.registry,
        )
        self.db_pool_overflow = Gauge(
            "tillpay_db_pool_overflow",
            "Database connections opened beyond the pool size.",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
