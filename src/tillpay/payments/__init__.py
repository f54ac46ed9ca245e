"""Payments: payments and their attempts at providers, webhooks, refunds, the janitor."""
