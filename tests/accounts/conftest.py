from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.accounts.helpers import Accounts


@pytest.fixture
def accounts(client: httpx.AsyncClient, mail_dir: Path) -> Accounts:
    return Accounts(client, mail_dir)
