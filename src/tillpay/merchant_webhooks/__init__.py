"""Merchant webhooks: signed events from tillpay to the shop's own backend."""
