"""Service tokens from a configured shop backend, end to end: keys from a real JWKS server
on loopback, every refusal a 401 ``invalid_credentials``, scopes enforced by the routes,
each ``jti`` accepted once across app instances sharing the database."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import func, select

from tests.conftest import ClientFactory
from tests.credentials.service_token_helpers import (
    ISSUER,
    Shop,
    SigningKey,
    bearer,
    hmac_signed,
    mint,
    shop_serving,
    unsigned,
)
from tillpay.credentials import jwks
from tillpay.credentials.models import UsedServiceToken
from tillpay.credentials.service_tokens import peek, purge_used, replay_key
from tillpay.kit.db import Database, utcnow
from tillpay.settings import Settings

SCOPED = "/v1/admin/webhook-endpoints"  # needs webhooks:manage
KEY = SigningKey.new("k1")
OTHER = SigningKey.new("k2")


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    async with shop_serving(KEY) as served:
        yield served


@pytest.fixture(autouse=True)
def patient_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key server answers from this test's own event loop, which a loaded 2-core CI
    machine can starve for seconds (one run timed out after 7.3 s): a generous fetch
    timeout here keeps the tests about keys, not about the machine's load. No test here
    is about the timeout itself."""
    monkeypatch.setattr(jwks, "FETCH_TIMEOUT", httpx.Timeout(60.0))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The JWKS cache's clock, moved by the test: ``clock[0] += 31``."""
    now = [time.monotonic()]
    monkeypatch.setattr(jwks, "_now", lambda: now[0])
    return now


@pytest.fixture
async def api(
    make_client: ClientFactory, clean_db: None, shop: Shop, clock: list[float]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(service_token_issuers=[shop.issuer()]) as client:
        yield client


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_credentials"


async def test_a_token_is_accepted_with_its_scopes_as_a_machine_of_the_issuers_merchant(
    api: httpx.AsyncClient, shop: Shop
) -> None:
    response = await api.get(SCOPED, headers=bearer(mint(KEY)))
    assert response.status_code == 200, response.text
    response = await api.get("/v1/admin/event-types", headers=bearer(mint(KEY)))
    assert response.status_code == 200, response.text
    assert shop.hits == ["/jwks.json"]  # fetched once, then cached


async def test_the_principal_names_the_shop_user_and_the_issuer(
    make_client: ClientFactory, clean_db: None, shop: Shop, clock: list[float]
) -> None:
    from fastapi import Depends, FastAPI

    from tillpay.accounts.deps import current_caller
    from tillpay.accounts.principal import Principal

    def probe(app: FastAPI) -> None:
        @app.get("/probe")
        async def _probe(principal: Principal = Depends(current_caller)) -> dict[str, Any]:
            actor = principal.actor()
            return {
                "user_id": principal.user_id,
                "kind": principal.kind.value,
                "role": principal.role,
                "merchant": principal.merchant,
                "scopes": sorted(principal.scopes),
                "credential": principal.credential,
                "actor_id": actor.id,
                "session_id": principal.session_id,
                "ip": principal.ip,
            }

    async with make_client(service_token_issuers=[shop.issuer()], setup=probe) as client:
        token = mint(KEY, sub="u" * 60, scope="payments:read events:read")
        body = (await client.get("/probe", headers=bearer(token))).json()
    assert body == {
        "user_id": "service:" + "u" * 60,
        "kind": "service_token",
        "role": None,
        "merchant": "default",
        "scopes": ["events:read", "payments:read"],
        "credential": f"service:{ISSUER}#" + "u" * 60,
        "actor_id": ("service:" + "u" * 60)[:40],
        "session_id": "",
        "ip": "127.0.0.1",
    }


async def test_a_token_without_the_routes_scope_gets_403_insufficient_scope(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get(SCOPED, headers=bearer(mint(KEY, scope="events:read")))
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


async def test_a_user_only_route_refuses_a_service_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/me", headers=bearer(mint(KEY)))
    assert response.status_code == 403
    assert response.json()["code"] == "user_only"


async def test_a_token_of_an_unconfigured_issuer_is_no_service_token(
    api: httpx.AsyncClient, shop: Shop
) -> None:
    # Read as a person's access token, which it is not: 401, and no key fetched for it.
    response = await api.get(SCOPED, headers=bearer(mint(KEY, iss="https://evil.example")))
    assert response.status_code == 401
    assert shop.hits == []


def _without(claim: str, now: int) -> dict[str, Any]:
    return {claim: None}


REFUSED_CLAIMS: dict[str, Callable[[int], dict[str, Any]]] = {
    "wrong audience": lambda now: {"aud": "someone-else"},
    "audience as a list": lambda now: {"aud": ["tillpay", "other"]},
    "expired": lambda now: {"iat": now - 400, "exp": now - 100},
    "lifetime over five minutes": lambda now: {"iat": now, "exp": now + 301},
    "issued in the future": lambda now: {"iat": now + 120, "exp": now + 200},
    "not yet valid (nbf)": lambda now: {"nbf": now + 120},
    "times as strings": lambda now: {"iat": str(now), "exp": str(now + 60)},
    "unknown scope": lambda now: {"scope": "webhooks:manage payments:everything"},
    "empty scope": lambda now: {"scope": " "},
    "scope not a string": lambda now: {"scope": ["webhooks:manage"]},
    "sub over 200 characters": lambda now: {"sub": "x" * 201},
    "sub with a control character": lambda now: {"sub": "shop\nuser"},
    "jti over 200 characters": lambda now: {"jti": "j" * 201},
    **{f"missing {c}": partial(_without, c) for c in ("aud", "exp", "iat", "jti", "sub", "scope")},
}


@pytest.mark.parametrize("changes", REFUSED_CLAIMS.values(), ids=REFUSED_CLAIMS.keys())
async def test_claims_outside_the_rules_are_refused(
    api: httpx.AsyncClient, changes: Callable[[int], dict[str, Any]]
) -> None:
    token = mint(KEY, **changes(int(time.time())))
    _refused(await api.get(SCOPED, headers=bearer(token)))


async def test_clock_skew_within_the_leeway_is_tolerated(api: httpx.AsyncClient) -> None:
    now = int(time.time())
    ahead = mint(KEY, iat=now + 20, exp=now + 80)  # the shop's clock 20 s fast
    assert (await api.get(SCOPED, headers=bearer(ahead))).status_code == 200
    behind = mint(KEY, iat=now - 80, exp=now - 20)  # expired 20 s ago by our clock
    assert (await api.get(SCOPED, headers=bearer(behind))).status_code == 200


async def test_a_wrong_signature_and_another_key_are_refused(api: httpx.AsyncClient) -> None:
    token = mint(KEY)
    head, body, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    _refused(await api.get(SCOPED, headers=bearer(f"{head}.{body}.{flipped}")))
    # Signed by another key, naming ours.
    forged = mint(SigningKey("k1", OTHER.private))
    _refused(await api.get(SCOPED, headers=bearer(forged)))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "HS256", "RS256", ""])
async def test_algorithms_outside_the_issuers_list_are_refused(
    api: httpx.AsyncClient, alg: str
) -> None:
    _refused(await api.get(SCOPED, headers=bearer(unsigned({"alg": alg, "kid": "k1"}))))


async def test_hs256_keyed_with_the_public_key_is_refused(
    make_client: ClientFactory, clean_db: None, shop: Shop, clock: list[float]
) -> None:
    # Key confusion, against both key sources: the JWK's and a PEM's bytes as HMAC secret.
    pem_issuer = shop.issuer(jwks_url=None, public_key_pem=KEY.public_pem())
    async with make_client(service_token_issuers=[pem_issuer]) as client:
        assert (await client.get(SCOPED, headers=bearer(mint(KEY)))).status_code == 200
        token = hmac_signed(KEY.public_pem().encode(), "k1")
        _refused(await client.get(SCOPED, headers=bearer(token)))


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "x5c"])
async def test_a_token_naming_its_own_key_location_is_refused_without_a_fetch(
    api: httpx.AsyncClient, shop: Shop, header: str
) -> None:
    values = {
        "jku": f"{shop.base}/attacker.json",
        "x5u": f"{shop.base}/attacker.pem",
        "jwk": OTHER.jwk(),
        "x5c": ["MIIB"],
    }
    token = mint(KEY, headers={header: values[header]})
    _refused(await api.get(SCOPED, headers=bearer(token)))
    assert shop.hits == []  # refused before any key was looked up


async def test_the_jwks_is_fetched_from_the_configured_url_only(
    api: httpx.AsyncClient, shop: Shop
) -> None:
    attacker = f"{shop.base}/attacker.json"
    for headers in ({"jku": attacker}, {}, {"kid": "elsewhere"}):
        await api.get(SCOPED, headers=bearer(mint(KEY, headers=headers)))
    assert set(shop.hits) == {"/jwks.json"}


@pytest.mark.parametrize("kid", ["unknown", "", "../../../../dev/null", "' UNION SELECT '1"])
async def test_a_kid_not_in_the_jwks_is_refused(api: httpx.AsyncClient, kid: str) -> None:
    _refused(await api.get(SCOPED, headers=bearer(mint(SigningKey(kid, KEY.private)))))


async def test_a_token_without_kid_is_refused_for_a_jwks_issuer(api: httpx.AsyncClient) -> None:
    token = mint(KEY, headers={"kid": None})
    _refused(await api.get(SCOPED, headers=bearer(token)))


async def test_a_rotated_key_is_picked_up_by_a_refresh_on_its_unknown_kid(
    api: httpx.AsyncClient, shop: Shop, clock: list[float]
) -> None:
    assert (await api.get(SCOPED, headers=bearer(mint(KEY)))).status_code == 200
    shop.keys = [OTHER.jwk(), KEY.jwk()]
    clock[0] += jwks.MIN_REFRESH_SECONDS + 1
    assert (await api.get(SCOPED, headers=bearer(mint(OTHER)))).status_code == 200
    assert shop.fetches() == 2
    # Within the cache time, known keys cost no fetch.
    assert (await api.get(SCOPED, headers=bearer(mint(KEY)))).status_code == 200
    assert shop.fetches() == 2


async def test_unknown_kids_refresh_at_most_once_per_interval(
    api: httpx.AsyncClient, shop: Shop, clock: list[float]
) -> None:
    assert (await api.get(SCOPED, headers=bearer(mint(KEY)))).status_code == 200
    for n in range(10):
        made_up = SigningKey(f"made-up-{n}", KEY.private)
        _refused(await api.get(SCOPED, headers=bearer(mint(made_up))))
    assert shop.fetches() == 1
    clock[0] += jwks.MIN_REFRESH_SECONDS + 1
    _refused(await api.get(SCOPED, headers=bearer(mint(SigningKey("made-up-x", KEY.private)))))
    assert shop.fetches() == 2


async def test_the_cache_expires_and_concurrent_requests_share_one_fetch(
    api: httpx.AsyncClient, shop: Shop, clock: list[float]
) -> None:
    responses = await asyncio.gather(
        *(api.get(SCOPED, headers=bearer(mint(KEY))) for _ in range(8))
    )
    assert [r.status_code for r in responses] == [200] * 8
    assert shop.fetches() == 1
    clock[0] += jwks.CACHE_SECONDS + 1
    assert (await api.get(SCOPED, headers=bearer(mint(KEY)))).status_code == 200
    assert shop.fetches() == 2


async def test_keys_stay_usable_while_the_jwks_is_unreachable(
    api: httpx.AsyncClient, shop: Shop, clock: list[float]
) -> None:
    assert (await api.get(SCOPED, headers=bearer(mint(KEY)))).status_code == 200
    shop.status = 503
    clock[0] += jwks.CACHE_SECONDS + 1
    assert (await api.get(SCOPED, headers=bearer(mint(KEY)))).status_code == 200
    assert shop.fetches() == 2  # tried, failed, kept the keys
    clock[0] += jwks.STALE_GRACE_SECONDS
    _refused(await api.get(SCOPED, headers=bearer(mint(KEY))))


async def test_symmetric_and_duplicate_keys_in_the_jwks_are_never_used(
    api: httpx.AsyncClient, shop: Shop
) -> None:
    shop.keys = [
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
        KEY.jwk(),
        {**OTHER.jwk(), "kid": "k1"},
    ]
    _refused(await api.get(SCOPED, headers=bearer(mint(KEY))))  # k1 ambiguous: dropped
    token = hmac_signed(b"secret-secret-secret", "shared")
    _refused(await api.get(SCOPED, headers=bearer(token)))


async def test_a_jwks_redirect_is_not_followed(api: httpx.AsyncClient, shop: Shop) -> None:
    shop.redirect_to = "/attacker.json"
    _refused(await api.get(SCOPED, headers=bearer(mint(KEY))))
    assert shop.hits == ["/jwks.json"]


async def test_an_oversized_jwks_is_not_read(api: httpx.AsyncClient, shop: Shop) -> None:
    padding = {"kty": "RSA", "kid": "pad", "n": "A" * (jwks.MAX_JWKS_BYTES + 1), "e": "AQAB"}
    shop.keys = [KEY.jwk(), padding]
    _refused(await api.get(SCOPED, headers=bearer(mint(KEY))))
    assert shop.fetches() == 1


@pytest.mark.parametrize(
    "token",
    [
        "e30.e30.",  # {} . {}
        "not.a.jwt",
        "a.b",
        "@@@.@@@.@@@",
        base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30.",
        "e30." + base64.urlsafe_b64encode(b'{"a":' * 1000).decode().rstrip("=") + ".",
        "e30." + "A" * 9000 + ".",
    ],
    ids=["empty", "garbage", "two parts", "bad chars", "deep header", "deep claims", "huge"],
)
async def test_malformed_bearers_are_401_never_500(api: httpx.AsyncClient, token: str) -> None:
    response = await api.get(SCOPED, headers=bearer(token))
    assert response.status_code == 401


async def test_a_replayed_jti_is_refused(api: httpx.AsyncClient) -> None:
    token = mint(KEY)
    assert (await api.get(SCOPED, headers=bearer(token))).status_code == 200
    _refused(await api.get(SCOPED, headers=bearer(token)))
    # Same jti in a fresh token: still a replay.
    peeked = peek(token)
    assert peeked is not None
    _refused(await api.get(SCOPED, headers=bearer(mint(KEY, jti=peeked[1]["jti"]))))


async def test_a_replay_is_refused_across_app_instances_sharing_the_database(
    make_client: ClientFactory, clean_db: None, shop: Shop, clock: list[float]
) -> None:
    issuers = [shop.issuer()]
    async with (
        make_client(service_token_issuers=issuers) as first,
        make_client(service_token_issuers=issuers) as second,
    ):
        token = mint(KEY)
        results = await asyncio.gather(
            first.get(SCOPED, headers=bearer(token)), second.get(SCOPED, headers=bearer(token))
        )
        assert sorted(r.status_code for r in results) == [200, 401]
        _refused(await first.get(SCOPED, headers=bearer(token)))


async def test_an_expired_leftover_row_does_not_block_a_reused_jti_and_the_purge_drops_it(
    api: httpx.AsyncClient, make_settings: Callable[..., Settings]
) -> None:
    database = Database.from_settings(make_settings())
    try:
        past = utcnow() - timedelta(seconds=5)
        async with database.transaction() as session:
            session.add(UsedServiceToken(key=replay_key(ISSUER, "old-jti"), expires_at=past))
            session.add(UsedServiceToken(key=replay_key(ISSUER, "older"), expires_at=past))
        token = mint(KEY, jti="old-jti")
        assert (await api.get(SCOPED, headers=bearer(token))).status_code == 200
        _refused(await api.get(SCOPED, headers=bearer(token)))
        assert await purge_used(database) == 1  # "older"; "old-jti" lives on
        async with database.read_session() as session:
            left = await session.scalar(select(func.count()).select_from(UsedServiceToken))
        assert left == 1
    finally:
        await database.dispose()


async def test_refusals_are_logged_with_the_reason_and_never_the_token(
    api: httpx.AsyncClient,
) -> None:
    token = mint(KEY, aud="elsewhere")
    with structlog.testing.capture_logs() as logs:
        _refused(await api.get(SCOPED, headers=bearer(token)))
    rejected = [e for e in logs if e["event"] == "authz.service_token_rejected"]
    assert rejected
    assert rejected[0]["reason"] == "InvalidAudienceError"
    assert rejected[0]["issuer"] == ISSUER
    assert token not in repr(logs)
    assert token.split(".")[2] not in repr(logs)


async def test_no_issuers_configured_means_no_verifier(client: httpx.AsyncClient) -> None:
    credentials = client.app.state.credentials  # type: ignore[attr-defined]
    assert credentials.service_tokens is None
    response = await client.get(SCOPED, headers=bearer(mint(KEY)))
    assert response.status_code == 401


async def test_another_merchants_token_does_not_get_deployment_wide_scopes(
    make_client: ClientFactory, clean_db: None, shop: Shop
) -> None:
    async with make_client(service_token_issuers=[shop.issuer(merchant="shop-one")]) as client:
        response = await client.get(SCOPED, headers=bearer(mint(KEY)))
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "insufficient_scope"
