"""Carts: one active cart per customer."""
