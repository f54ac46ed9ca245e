"""Payments: payments and their attempts at providers, webhooks, refunds, the janitor.

Two rules shape this package:

1. **No network call inside a transaction.** Provider calls happen between short
   transactions (reserve → call → finalise, in :mod:`.create`, :mod:`.refunds`,
   :mod:`.sync` and :mod:`.webhooks`), so no row lock is held while a provider answers, and
   SQLite's single writer is never blocked on the network.
2. **One way to change payment state.** The API's create call, the browser return, the
   webhook worker and the janitor all end in :func:`.apply.apply_provider_state` (refunds in
   :func:`.apply.apply_refund_state`), under the same locks taken in the same order:
   order → payment → attempt → refund.

Modules: ``apply`` (state changes, session passed in), ``create``, ``refunds``, ``sync``
and ``webhooks`` (orchestrators that open their own short transactions around provider
calls), ``refund_matching`` (provider refunds to tillpay's own or external ones),
``queries`` (reads), ``errors``.
"""
