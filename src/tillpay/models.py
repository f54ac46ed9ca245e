"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests), and the
audit chain's session hooks (``audit/chain.py``), which every writer of audit rows needs."""

from tillpay.accounts import models as accounts_models
from tillpay.audit import chain as audit_chain
from tillpay.audit import models as audit_models
from tillpay.carts import models as carts_models
from tillpay.catalog import models as catalog_models
from tillpay.credentials import models as credentials_models
from tillpay.events import models as events_models
from tillpay.kit import idempotency_models, leases
from tillpay.kit.db import Base
from tillpay.ledger import models as ledger_models
from tillpay.merchant_webhooks import models as merchant_webhooks_models
from tillpay.orders import models as orders_models
from tillpay.payments import models as payments_models
from tillpay.sandbox import models as sandbox_models

__all__ = [
    "Base",
    "accounts_models",
    "audit_chain",
    "audit_models",
    "carts_models",
    "catalog_models",
    "credentials_models",
    "events_models",
    "idempotency_models",
    "leases",
    "ledger_models",
    "merchant_webhooks_models",
    "orders_models",
    "payments_models",
    "sandbox_models",
]
