"""The shop every race here runs against: a client on its own app and a checkout driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.accounts.helpers import Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.payments.helpers import Checkout


@pytest.fixture
def pool_size() -> int:
    """PostgreSQL connections the racers may hold at once: each racer may hold two (its
    own and the sandbox's answering it). A module overrides it to race wider."""
    return 30


@pytest.fixture
async def client(
    make_client: ClientFactory, clean_db: None, pool_size: int
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(database_pool_size=pool_size) as c:
        yield c


@pytest.fixture
def checkout(client: httpx.AsyncClient, mail_dir: Path) -> Checkout:
    return Checkout(Shop(Accounts(client, mail_dir)))
