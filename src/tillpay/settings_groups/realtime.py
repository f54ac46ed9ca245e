"""Realtime settings: the WebSocket at ``/v1/ws`` (docs/realtime.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RealtimeSettings(BaseModel):
    """Live events for signed-in customers, vendors and admins over one WebSocket."""

    realtime_enabled: bool = Field(
        True,
        description="Serve `/v1/ws` and push events to it. Across several API processes the "
        "fan-out goes through Redis (`TILLPAY_REDIS_URL`); without Redis, only the process "
        "whose worker handled the event reaches its sockets.",
    )
    realtime_auth_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Time a new socket has to send its `auth` message."
    )
    realtime_recheck_seconds: float = Field(
        15.0,
        gt=0,
        le=30,
        description="How often an open socket's session is checked again (a revoked session "
        "is closed within this time).",
    )
    realtime_heartbeat_seconds: float = Field(
        25.0, gt=0, le=300, description="Seconds between `heartbeat` messages on a quiet socket."
    )
    realtime_max_connections_per_user: int = Field(
        5, ge=1, le=100, description="Open sockets one user may hold in one API process."
    )
    realtime_queue_size: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Messages waiting for one socket; a client further behind is dropped "
        "(close code 1013) rather than buffered without bound.",
    )
    realtime_send_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Time one message may take to reach a client."
    )
