from __future__ import annotations

import pytest

from tests.accounts.helpers import Accounts
from tests.commerce.helpers import Shop
from tests.payments.helpers import Checkout


@pytest.fixture
def shop(accounts: Accounts) -> Shop:
    return Shop(accounts)


@pytest.fixture
def checkout(shop: Shop) -> Checkout:
    return Checkout(shop)
