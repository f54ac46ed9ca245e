"""The built-in sandbox payment provider: a tiny PSP with a hosted test card page."""
