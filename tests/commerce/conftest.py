from __future__ import annotations

import pytest

from tests.accounts.helpers import Accounts
from tests.commerce.helpers import Shop


@pytest.fixture
def shop(accounts: Accounts) -> Shop:
    return Shop(accounts)
