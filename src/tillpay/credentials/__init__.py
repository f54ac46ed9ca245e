"""Machine credentials: API keys created by administrators and service tokens issued by a
shop's own backend. Both resolve to a :class:`~tillpay.accounts.principal.Principal` whose
permissions are its scopes."""
