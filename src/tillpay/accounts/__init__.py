"""Accounts: users, roles and permissions, sessions and tokens, 2FA, password flows."""
