"""Per-address limits on account mail (verification and password-reset links).

A flood of requests for one address sends at most the policy's number of mails. The
limit counts requests for the address whether or not an account has it, so the answers
are identical either way (no account enumeration), and the limiter stores only a keyed
hash of the normalised address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.accounts.helpers import PASSWORD, Accounts, unique_email
from tests.conftest import ClientFactory, app_of
from tests.http.test_errors import assert_problem
from tillpay.notifications.mail import read_mailbox
from tillpay.settings import Settings


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    # The per-IP auth policy out of the way; the per-address mail policy at its default.
    async with make_client(ratelimit_policies={"auth": "1000/minute"}) as c:
        yield c


def _default_mail_policy() -> str:
    return Settings.model_fields["ratelimit_policies"].default_factory()["account_mail"]  # type: ignore[misc,call-arg]


def test_the_mail_policy_defaults_to_three_an_hour_and_ten_a_day() -> None:
    assert _default_mail_policy() == "3/hour;10/day"


def _without_instance(response: httpx.Response) -> dict[str, object]:
    body: dict[str, object] = response.json()
    body.pop("instance", None)
    return body


async def forgot(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/v1/auth/password/forgot", json={"email": email})


async def test_ten_reset_requests_send_three_mails_to_one_address(
    accounts: Accounts, client: httpx.AsyncClient, mail_dir: Path
) -> None:
    account = await accounts.register()  # the verification mail is the first of three
    answers = [await forgot(client, account.email) for _ in range(10)]
    assert [r.status_code for r in answers[:2]] == [202, 202]
    for refused in answers[2:]:
        assert assert_problem(refused, 429)["code"] == "mail_rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
    assert len(read_mailbox(mail_dir, to=account.email, category="password_reset")) == 2
    assert len(read_mailbox(mail_dir, to=account.email)) == 3


async def test_the_limit_answers_the_same_whether_or_not_the_address_exists(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    """Every request for an address counts, an account or not: three per address."""
    known = (await accounts.register()).email  # one request for this address
    unknown = unique_email()
    assert [(await forgot(client, known)).status_code for _ in range(2)] == [202, 202]
    assert [(await forgot(client, unknown)).status_code for _ in range(3)] == [202] * 3
    refused_known, refused_unknown = await forgot(client, known), await forgot(client, unknown)
    assert refused_known.status_code == refused_unknown.status_code == 429
    assert _without_instance(refused_known) == _without_instance(refused_unknown)
    varying = {"x-request-id", "date"}
    assert refused_known.headers.keys() - varying == refused_unknown.headers.keys() - varying


async def test_the_limit_is_per_normalised_address(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    email = unique_email()
    for spelling in (email, email.upper(), f"  {email.title()}"):
        assert (await forgot(client, spelling.strip())).status_code == 202
    assert_problem(await forgot(client, email.upper()), 429)
    assert (await forgot(client, unique_email())).status_code == 202


async def test_registration_and_resend_share_the_address_budget(
    accounts: Accounts, client: httpx.AsyncClient, mail_dir: Path
) -> None:
    account = await accounts.register()  # one verification mail
    await accounts.login(account)
    resend = [
        await client.post("/v1/auth/verify-email/resend", headers=account.headers) for _ in range(3)
    ]
    assert [r.status_code for r in resend] == [202, 202, 429]
    assert assert_problem(resend[2], 429)["code"] == "mail_rate_limited"
    again = await client.post(
        "/v1/auth/register", json={"email": account.email, "password": PASSWORD}
    )
    assert_problem(again, 429)
    assert len(read_mailbox(mail_dir, to=account.email)) == 3


async def test_the_limiter_never_stores_the_address(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    email = unique_email()
    await forgot(client, email)
    redis = app_of(client).state.redis
    if redis is None:
        pytest.skip("memory storage: nothing persisted")
    keys = [k async for k in redis.scan_iter(match="*", count=1000)]
    assert keys, "the limiter wrote nothing"
    local = email.split("@")[0].encode()
    assert not any(local in k for k in keys)
    for key in keys:
        if (await redis.type(key)) == b"string":
            assert local not in (await redis.get(key) or b"")
