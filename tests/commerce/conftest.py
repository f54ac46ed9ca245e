from __future__ import annotations

import pytest

from tests.accounts.helpers import Accounts
from tests.commerce.helpers import Shop

pytest_plugins: list[str] = []


@pytest.fixture
def shop(accounts: Accounts) -> Shop:
    return Shop(accounts)


@pytest.fixture
def accounts(client, mail_dir):  # type: ignore[no-untyped-def]
    return Accounts(client, mail_dir)
