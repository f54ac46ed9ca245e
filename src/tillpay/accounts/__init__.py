"""Accounts: users, roles and permissions, sessions and tokens, 2FA, password flows.

Services, one module per concern: ``registration``, ``login`` (and step-up),
``sessions`` (refresh rotation, logout, listing and revoking), ``passwords``, ``totp``
(enrolment, recovery codes), ``profile`` and ``admin``; shared pieces in ``users``,
``links``, ``lockout`` and ``errors``. They take the request's session first and never
commit. Mail to send is returned (``errors.Outcome``) for the route to hand to a background
task, so it leaves only after the commit; a refusal that must keep its writes raises
``kit.errors.CommittedRefusal``.
"""
