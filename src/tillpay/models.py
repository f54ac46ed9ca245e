"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from tillpay.kit.db import Base

__all__ = ["Base"]
