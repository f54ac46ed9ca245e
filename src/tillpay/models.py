"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from tillpay.accounts import models as accounts_models
from tillpay.audit import models as audit_models
from tillpay.kit.db import Base

__all__ = ["Base", "accounts_models", "audit_models"]
