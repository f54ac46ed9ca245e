"""Notifications: transactional email (and, later, realtime WebSocket events)."""
