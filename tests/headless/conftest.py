from __future__ import annotations

from typing import Any

import pytest

from tests.commerce.helpers import Shop
from tests.payments.helpers import Checkout


@pytest.fixture
def checkout(accounts: Any) -> Checkout:
    return Checkout(Shop(accounts))
