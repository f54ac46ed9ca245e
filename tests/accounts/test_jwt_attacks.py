"""The JWT attack matrix (security checklist §3.3) against a real protected route.

Every forged token differs from a valid access token in exactly the attacked aspect, and
every one must be answered 401 problem+json (never 500). The first test proves the
forging harness itself produces tokens the server accepts, so a rejection below is the
server's doing and not a broken fixture.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import select

from tests.accounts.helpers import Account, Accounts, bearer, latest_token
from tests.http.test_errors import assert_problem
from tillpay.accounts.models import User
from tillpay.kit.jwt import SigningKey, load_public_key

ME = "/v1/me"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def decode_segment(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """Sign by hand: PyJWT refuses asymmetric-looking HMAC secrets, an attacker does not."""
    signing_input = f"{encode_segment(header)}.{encode_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{encode_segment(header)}.{encode_segment(claims)}."


@dataclass
class Target:
    """A signed-in user, their valid access token and the server's signing key."""

    client: httpx.AsyncClient
    accounts: Accounts
    account: Account
    token: str
    header: dict[str, Any]
    claims: dict[str, Any]
    key: SigningKey

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """An EdDSA token (by default with the server's own key) with these claims/header."""
        private_key = key or self.key.private_key
        assert private_key is not None
        return jwt.encode(
            claims if claims is not None else self.claims,
            private_key,
            algorithm="EdDSA",
            headers=header if header is not None else {"typ": "at+jwt", "kid": self.key.kid},
        )

    def with_claims(self, **changes: Any) -> dict[str, Any]:
        return {**self.claims, **changes}

    def without_claim(self, name: str) -> dict[str, Any]:
        return {k: v for k, v in self.claims.items() if k != name}

    async def me(self, token: str) -> httpx.Response:
        return await self.client.get(ME, headers=bearer(token))

    async def assert_rejected(self, token: str) -> None:
        """401 problem+json with the uniform invalid-token code, for any forged token."""
        response = await self.me(token)
        body = assert_problem(response, 401)
        assert body["code"] == "invalid_token", token
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture
async def target(client: httpx.AsyncClient, accounts: Accounts) -> Target:
    account = await accounts.register()
    response = await accounts.login(account)
    assert response.status_code == 200, response.text
    token = account.access_token
    header_segment, payload_segment, _ = token.split(".")
    runtime = client.app.state.accounts  # type: ignore[attr-defined]
    key = (await runtime.keys.ring()).signing_key
    return Target(
        client=client,
        accounts=accounts,
        account=account,
        token=token,
        header=decode_segment(header_segment),
        claims=decode_segment(payload_segment),
        key=key,
    )


async def test_the_forging_harness_produces_tokens_the_server_accepts(target: Target) -> None:
    assert (await target.me(target.token)).status_code == 200
    forged = target.sign(target.with_claims(jti="harness-check"))
    assert forged != target.token
    assert (await target.me(forged)).status_code == 200


async def test_a_flipped_signature_character_is_rejected(target: Target) -> None:
    head, payload, signature = target.token.split(".")
    # Not the last character: its low bits are padding and may decode to the same bytes.
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    await target.assert_rejected(f"{head}.{payload}.{flipped}")


async def test_tampered_claims_with_the_old_signature_are_rejected(
    target: Target, accounts: Accounts
) -> None:
    other = await accounts.register()
    async with accounts.database.session() as session:
        other_id = (
            await session.execute(select(User.id).where(User.email == other.email))
        ).scalar_one()
    head, _, signature = target.token.split(".")
    for tampered in (target.with_claims(role="ADMIN"), target.with_claims(sub=other_id)):
        await target.assert_rejected(f"{head}.{encode_segment(tampered)}.{signature}")


async def test_alg_none_in_any_casing_is_rejected(target: Target) -> None:
    for alg in ("none", "None", "NONE", "nOnE"):
        header = {**target.header, "alg": alg}
        await target.assert_rejected(unsigned(header, target.claims))


async def test_an_empty_signature_segment_is_rejected(target: Target) -> None:
    head, payload, _ = target.token.split(".")
    await target.assert_rejected(f"{head}.{payload}.")


async def test_hs256_with_guessable_secrets_is_rejected(target: Target) -> None:
    header = {**target.header, "alg": "HS256"}
    for secret in (b"", b"secret", b"changeme"):
        await target.assert_rejected(hs256(header, target.claims, secret))


async def test_hs256_signed_with_the_published_public_key_is_rejected(target: Target) -> None:
    jwks = (await target.client.get("/.well-known/jwks.json")).json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == target.key.kid)
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    pem = load_public_key(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {**target.header, "alg": "HS256"}
    for secret in (raw, pem, json.dumps(jwk).encode()):
        await target.assert_rejected(hs256(header, target.claims, secret))


async def test_an_embedded_attacker_jwk_is_not_trusted(target: Target) -> None:
    attacker = Ed25519PrivateKey.generate()
    attacker_jwk = OKPAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    for header in (
        {"typ": "at+jwt", "kid": target.key.kid, "jwk": attacker_jwk},
        {"typ": "at+jwt", "jwk": attacker_jwk},
    ):
        await target.assert_rejected(target.sign(header=header, key=attacker))


async def test_jku_and_x5u_urls_are_never_fetched(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    attacker = Ed25519PrivateKey.generate()
    # Two independent witnesses: a listener that must receive nothing, and a record of
    # socket connects to the discard port (other ports pass through: the database and
    # Redis clients use sockets too).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    attempts: list[object] = []
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def guarded(original: Any) -> Any:
        def connect(sock: socket.socket, address: Any) -> Any:
            if isinstance(address, tuple) and address[1] == 9:
                attempts.append(address)
                raise ConnectionRefusedError("outbound request during token verification")
            return original(sock, address)

        return connect

    try:
        for name in ("jku", "x5u"):
            for url in (f"http://127.0.0.1:9/{name}", f"http://127.0.0.1:{port}/{name}"):
                token = target.sign(
                    header={"typ": "at+jwt", "kid": "attacker", name: url}, key=attacker
                )
                with monkeypatch.context() as patch:
                    patch.setattr(socket.socket, "connect", guarded(original_connect))
                    patch.setattr(socket.socket, "connect_ex", guarded(original_connect_ex))
                    response = await target.me(token)
                assert_problem(response, 401)
        assert attempts == []
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


async def test_kid_injection_strings_are_rejected_quickly(target: Target) -> None:
    for kid in ("", "../../../../dev/null", "/dev/null", "' UNION SELECT '1", "$(sleep 10)"):
        started = time.monotonic()
        await target.assert_rejected(target.sign(header={"typ": "at+jwt", "kid": kid}))
        assert time.monotonic() - started < 5, kid


async def test_a_10_kb_kid_is_rejected(target: Target) -> None:
    await target.assert_rejected(target.sign(header={"typ": "at+jwt", "kid": "k" * 10_240}))


async def test_an_expired_token_is_rejected(target: Target) -> None:
    now = int(time.time())
    await target.assert_rejected(target.sign(target.with_claims(iat=now - 120, exp=now - 60)))


async def test_a_token_not_valid_before_a_future_time_is_rejected(target: Target) -> None:
    await target.assert_rejected(target.sign(target.with_claims(nbf=int(time.time()) + 600)))


async def test_a_token_without_exp_is_rejected(target: Target) -> None:
    await target.assert_rejected(target.sign(target.without_claim("exp")))


async def test_wrong_or_missing_audience_is_rejected(target: Target) -> None:
    await target.assert_rejected(target.sign(target.without_claim("aud")))
    for audience in ("another-service", "tillpay-api:mfa", ["tillpay-api", "another-service"]):
        await target.assert_rejected(target.sign(target.with_claims(aud=audience)))


async def test_a_foreign_or_missing_issuer_is_rejected(target: Target) -> None:
    await target.assert_rejected(target.sign(target.with_claims(iss="https://evil.example")))
    await target.assert_rejected(target.sign(target.without_claim("iss")))


async def test_a_refresh_token_is_not_an_access_token(target: Target) -> None:
    await target.assert_rejected(target.account.refresh_token)


async def test_mailed_link_tokens_are_not_access_tokens(target: Target) -> None:
    email = target.account.email
    forgot = await target.client.post("/v1/auth/password/forgot", json={"email": email})
    assert forgot.status_code == 202
    mail_dir = target.accounts.mail_dir
    for category in ("verify_email", "password_reset"):
        await target.assert_rejected(latest_token(mail_dir, email, category))


async def test_json_serialized_jws_is_rejected(target: Target) -> None:
    head, payload, signature = target.token.split(".")
    general = {"payload": payload, "signatures": [{"protected": head, "signature": signature}]}
    flattened = {"payload": payload, "protected": head, "signature": signature}
    for serialized in (general, flattened):
        await target.assert_rejected(json.dumps(serialized, separators=(",", ":")))


async def test_tokens_with_json_characters_are_rejected(target: Target) -> None:
    _, payload, signature = target.token.split(".")
    raw_header = json.dumps(target.header, separators=(",", ":"))
    await target.assert_rejected(f"{raw_header}.{payload}.{signature}")
    await target.assert_rejected(target.token + '"')


async def test_the_basic_scheme_is_not_accepted(target: Target) -> None:
    credentials = f"{target.account.email}:{target.account.password}".encode()
    for value in (base64.b64encode(credentials).decode(), target.token):
        response = await target.client.get(ME, headers={"Authorization": f"Basic {value}"})
        assert_problem(response, 401)


async def test_the_bearer_scheme_name_is_case_insensitive(target: Target) -> None:
    # RFC 6750 §2.1 / RFC 9110 §11.1: auth-scheme names are case-insensitive.
    for scheme in ("bearer", "BEARER"):
        response = await target.client.get(
            ME, headers={"Authorization": f"{scheme} {target.token}"}
        )
        assert response.status_code == 200
