"""The demo storefront at ``/shop`` (development and demo; off in production unless
enabled): server-rendered pages over the same services as the API (docs/console.md)."""
