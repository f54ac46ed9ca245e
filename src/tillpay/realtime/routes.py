"""``GET /v1/ws``: the realtime WebSocket (protocol: :mod:`tillpay.realtime.socket`)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from tillpay.realtime import socket

router = APIRouter(tags=["realtime"])


@router.websocket("/v1/ws")
async def events_socket(websocket: WebSocket) -> None:
    """Live events for the signed-in user; authenticated by the first message."""
    state = websocket.app.state
    await socket.serve(websocket, rt=state.accounts, hub=state.realtime, settings=state.settings)
