"""Login lockout does not depend on rate limiting: it holds with the limiter switched off."""

from __future__ import annotations

from pathlib import Path

from tests.accounts.helpers import Accounts
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem


async def test_ten_wrong_passwords_lock_the_account_with_rate_limiting_disabled(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    async with make_client(ratelimit_enabled=False) as client:
        accounts = Accounts(client, mail_dir)
        account = await accounts.register()
        right = account.password
        account.password = right + "x"
        answers = [(await accounts.login(account)).status_code for _ in range(10)]
        account.password = right
        locked = await accounts.login(account)
    assert answers[:5] == [401] * 5
    assert set(answers[5:]) == {429}
    assert assert_problem(locked, 429)["code"] == "account_locked"
    assert "retry-after" in locked.headers
