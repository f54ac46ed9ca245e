"""Append-only audit log shared by every domain."""
