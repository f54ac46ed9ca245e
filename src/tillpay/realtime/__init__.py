"""Realtime: committed events pushed to signed-in clients over the WebSocket ``/v1/ws``.

The outbox relay gives every event a ``realtime`` delivery; the worker's job
(:mod:`.jobs`) works out who may see it and in which shape (:mod:`.audience`), then
publishes it on the bus (:mod:`.bus`: Redis pub/sub across API processes, or straight to
this process's sockets). Each API process routes what it hears to its own open sockets
(:mod:`.hub`); one socket's protocol (auth first, re-checks, heartbeats, back-pressure)
is :mod:`.socket`. Realtime is best effort by design: a client that was away re-fetches
(docs/realtime.md).
"""
