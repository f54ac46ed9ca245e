"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from tillpay.accounts import models as accounts_models
from tillpay.audit import models as audit_models
from tillpay.carts import models as carts_models
from tillpay.catalog import models as catalog_models
from tillpay.kit import idempotency_models
from tillpay.kit.db import Base
from tillpay.orders import models as orders_models

__all__ = [
    "Base",
    "accounts_models",
    "audit_models",
    "carts_models",
    "catalog_models",
    "idempotency_models",
    "orders_models",
]
