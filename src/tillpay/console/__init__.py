"""The operator console at ``/console`` (docs/console.md), built on ``tillpay.web``.

``nav`` (the sidebar and :func:`~tillpay.console.nav.page`, the console's ``render``),
``auth_routes`` (sign-in, 2FA, step-up, sign-out), one module of page queries per area
(``overview``, ``payments``) and ``routes`` (thin: validate, call, render).
"""
