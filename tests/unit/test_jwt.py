"""Ed25519 signing keys and typed JWTs: issue/verify, rotation, key storage, attack matrix.

The forgery cases follow security-checklist.md §1b and §3.3 (RFC 8725, 8725bis).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from tillpay.kit.jwt import (
    ACCESS,
    MAX_TOKEN_LENGTH,
    MFA_PENDING,
    REGISTERED_CLAIMS,
    InvalidToken,
    KeyDecryptionError,
    KeyRing,
    SigningKey,
    TokenKind,
    TokenService,
    VerifiedTokens,
    decrypt_private_key,
    encrypt_private_key,
    generate_signing_key,
    load_public_key,
    public_jwk,
    serialize_public_key,
)

ISSUER = "https://tillpay.test"
AUDIENCE = "tillpay-api"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SECRET = b"s" * 32


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    key: SigningKey
    ring: KeyRing
    clock: Clock
    service: TokenService

    @property
    def private_key(self) -> Ed25519PrivateKey:
        assert self.key.private_key is not None
        return self.key.private_key


@pytest.fixture
def env() -> Env:
    key = generate_signing_key(now=T0 - timedelta(days=1))
    ring = KeyRing([key])
    clock = Clock(T0)
    # The remembered-verification cache is on, as in the app: every attack below must
    # fail with it too.
    service = TokenService(
        ring, issuer=ISSUER, audience=AUDIENCE, clock=clock, verified=VerifiedTokens()
    )
    return Env(key, ring, clock, service)


# --------------------------------------------------------------------------- helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(T0.timestamp())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "usr_1",
        "jti": "jti-forged",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def ed25519_token(header: dict[str, Any] | str, payload: dict[str, Any], key: Any) -> str:
    """A token signed with ``key`` over an arbitrary header (dict, or raw JSON text)."""
    header_json = header if isinstance(header, str) else json.dumps(header)
    signing_input = f"{b64url(header_json.encode())}.{b64json(payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def hs256_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    # PyJWT refuses to HMAC with a PEM key (its CVE-2022-29217 fix), so an attacker would
    # forge this by hand; do the same.
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def our_header(env: Env, **extra: Any) -> dict[str, Any]:
    return {"alg": "EdDSA", "typ": "at+jwt", "kid": env.key.kid, **extra}


def rejected(env: Env, token: Any, kind: TokenKind = ACCESS) -> str:
    with pytest.raises(InvalidToken) as excinfo:
        env.service.verify(token, kind)
    return excinfo.value.reason


def segments(token: str) -> list[str]:
    return token.split(".")


# --------------------------------------------------------------------------- issue / verify


def test_round_trip_returns_claims_with_sid_role_and_jti(env: Env) -> None:
    issued = env.service.issue(
        ACCESS,
        subject="usr_1",
        session_id="ses_1",
        ttl=timedelta(minutes=5),
        extra={"role": "ADMIN"},
    )

    got = env.service.verify(issued.token, ACCESS)

    assert got["sub"] == "usr_1"
    assert got["sid"] == "ses_1"
    assert got["role"] == "ADMIN"
    assert got["jti"] == issued.jti
    assert got["iss"] == ISSUER
    assert got["aud"] == AUDIENCE


def test_issued_times_follow_the_clock_and_ttl(env: Env) -> None:
    issued = env.service.issue(ACCESS, subject="usr_1", ttl=timedelta(minutes=5))

    got = env.service.verify(issued.token, ACCESS)

    assert got["iat"] == got["nbf"] == int(T0.timestamp())
    assert got["exp"] == int(T0.timestamp()) + 300
    assert issued.expires_at == T0 + timedelta(minutes=5)


def test_ttl_defaults_to_the_kind_default(env: Env) -> None:
    issued = env.service.issue(MFA_PENDING, subject="usr_1")

    assert issued.expires_at == T0 + MFA_PENDING.default_ttl


def test_sid_is_omitted_without_a_session(env: Env) -> None:
    issued = env.service.issue(ACCESS, subject="usr_1")

    assert "sid" not in env.service.verify(issued.token, ACCESS)


def test_issued_header_is_eddsa_with_kind_typ_and_kid(env: Env) -> None:
    issued = env.service.issue(MFA_PENDING, subject="usr_1")

    assert jwt.get_unverified_header(issued.token) == {
        "alg": "EdDSA",
        "typ": "mfa+jwt",
        "kid": env.key.kid,
    }


def test_jti_is_unique_across_1000_issues_and_has_128_bits(env: Env) -> None:
    jtis = {env.service.issue(ACCESS, subject="usr_1").jti for _ in range(1000)}

    assert len(jtis) == 1000
    assert all(len(base64.urlsafe_b64decode(j + "==")) >= 16 for j in jtis)


@pytest.mark.parametrize("claim", sorted(REGISTERED_CLAIMS))
def test_extra_claims_may_not_override_registered_claims(env: Env, claim: str) -> None:
    with pytest.raises(ValueError, match="override"):
        env.service.issue(ACCESS, subject="usr_1", extra={claim: "x"})


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1)])
def test_non_positive_ttl_is_refused(env: Env, ttl: timedelta) -> None:
    with pytest.raises(ValueError, match="ttl"):
        env.service.issue(ACCESS, subject="usr_1", ttl=ttl)


def test_a_custom_kind_gets_its_own_typ_and_audience(env: Env) -> None:
    reset = TokenKind("password_reset", "reset+jwt", ":reset", timedelta(minutes=10))
    issued = env.service.issue(reset, subject="usr_1")

    got = env.service.verify(issued.token, reset)

    assert got["aud"] == f"{AUDIENCE}:reset"
    rejected(env, issued.token, ACCESS)


# --------------------------------------------------------------------------- signature forgery


@pytest.mark.parametrize(
    "tamper", [{"role": "ADMIN"}, {"sub": "usr_2"}], ids=["role-to-admin", "other-subject"]
)
def test_tampered_claims_with_the_old_signature_are_rejected(
    env: Env, tamper: dict[str, str]
) -> None:
    issued = env.service.issue(ACCESS, subject="usr_1", extra={"role": "CUSTOMER"})
    header, payload, signature = segments(issued.token)
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))

    forged = f"{header}.{b64json({**body, **tamper})}.{signature}"

    assert rejected(env, forged).startswith("rejected by PyJWT")


def test_a_flipped_signature_character_is_rejected(env: Env) -> None:
    token = env.service.issue(ACCESS, subject="usr_1").token
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]

    rejected(env, flipped)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_an_empty_signature_is_rejected(env: Env, alg: str) -> None:
    token = f"{b64json({'alg': alg, 'typ': 'at+jwt', 'kid': env.key.kid})}.{b64json(claims())}."

    rejected(env, token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected_even_with_a_signature_segment(env: Env, alg: str) -> None:
    token = ed25519_token(our_header(env, alg=alg), claims(), env.private_key)

    assert rejected(env, token) == "algorithm not allowed"


@pytest.mark.parametrize("alg", ["eddsa", "EDDSA", "Ed25519", "ES256", "", None])
def test_alg_must_be_exactly_eddsa(env: Env, alg: str | None) -> None:
    token = ed25519_token(our_header(env, alg=alg), claims(), env.private_key)

    assert rejected(env, token) == "algorithm not allowed"


def test_missing_alg_is_rejected(env: Env) -> None:
    token = ed25519_token({"typ": "at+jwt", "kid": env.key.kid}, claims(), env.private_key)

    assert rejected(env, token) == "algorithm not allowed"


def test_a_null_signature_is_rejected(env: Env) -> None:
    header, payload, _ = segments(env.service.issue(ACCESS, subject="usr_1").token)

    assert rejected(env, f"{header}.{payload}.") == "not compact JWS serialization"


@pytest.mark.parametrize("encoding", ["pem", "raw"])
def test_hs256_signed_with_the_public_key_is_rejected(env: Env, encoding: str) -> None:
    if encoding == "pem":
        secret = env.key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = serialize_public_key(env.key.public_key)

    token = hs256_token(our_header(env, alg="HS256"), claims(), secret)

    assert rejected(env, token) == "algorithm not allowed"


@pytest.mark.parametrize("secret", [b"", b"secret", b"changeme"])
def test_hs256_with_a_guessable_secret_is_rejected(env: Env, secret: bytes) -> None:
    token = hs256_token(our_header(env, alg="HS256"), claims(), secret)

    rejected(env, token)


def test_an_embedded_jwk_header_with_the_attackers_key_is_rejected(env: Env) -> None:
    attacker = Ed25519PrivateKey.generate()
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key(), as_dict=True)

    token = ed25519_token(our_header(env, jwk=jwk), claims(), attacker)

    assert rejected(env, token) == "unexpected header parameter"


@pytest.fixture
def outbound_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record (and block) every attempt to open a network connection."""
    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("outbound network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


@pytest.mark.parametrize("param", ["jku", "x5u"])
def test_jku_and_x5u_headers_are_rejected_without_any_request(
    env: Env, outbound_calls: list[Any], param: str
) -> None:
    attacker = Ed25519PrivateKey.generate()
    header = our_header(env, **{param: "https://attacker.example/keys.json"})

    reason = rejected(env, ed25519_token(header, claims(), attacker))

    assert reason == "unexpected header parameter"
    assert outbound_calls == []


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("jku", "https://attacker.example/keys.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIB"]),
        ("crit", ["exp"]),
        ("b64", False),
        ("cty", "JWT"),
    ],
)
def test_any_header_parameter_beyond_alg_typ_kid_is_rejected_even_when_we_signed_it(
    env: Env, param: str, value: Any
) -> None:
    token = ed25519_token(our_header(env, **{param: value}), claims(), env.private_key)

    assert rejected(env, token) == "unexpected header parameter"


KID_PAYLOADS = [
    "",
    "../../../../dev/null",
    "/dev/null",
    "/invalid_path",
    "' UNION SELECT '1",
    "$(sleep 10)",
    "x" * 10_000,
    "key_\x00",
]


@pytest.mark.parametrize("kid", KID_PAYLOADS, ids=lambda k: repr(k)[:30])
def test_kid_injection_is_rejected_quickly(env: Env, kid: str) -> None:
    token = ed25519_token(our_header(env, kid=kid), claims(), env.private_key)
    started = time.monotonic()

    with pytest.raises(InvalidToken):
        env.service.verify(token, ACCESS)

    assert time.monotonic() - started < 1


@pytest.mark.parametrize("kid", [None, 1, ["key"], {"k": "v"}, True])
def test_a_non_string_kid_is_rejected(env: Env, kid: Any) -> None:
    token = ed25519_token(our_header(env, kid=kid), claims(), env.private_key)

    assert rejected(env, token) == "unknown kid"


def test_a_missing_kid_is_rejected(env: Env) -> None:
    token = ed25519_token({"alg": "EdDSA", "typ": "at+jwt"}, claims(), env.private_key)

    assert rejected(env, token) == "unknown kid"


def test_duplicate_header_parameters_are_rejected(env: Env) -> None:
    header = f'{{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"{env.key.kid}"}}'

    assert rejected(env, ed25519_token(header, claims(), env.private_key)) == (
        "duplicate header parameter"
    )


@pytest.mark.parametrize("header", ['["EdDSA"]', '"EdDSA"', "null", "not json"])
def test_a_header_that_is_not_a_json_object_is_rejected(env: Env, header: str) -> None:
    rejected(env, ed25519_token(header, claims(), env.private_key))


def test_a_token_from_another_issuer_with_a_colliding_kid_is_rejected(env: Env) -> None:
    foreign = TokenService(
        KeyRing(
            [
                SigningKey(
                    kid=env.key.kid,
                    private_key=(other := Ed25519PrivateKey.generate()),
                    public_key=other.public_key(),
                    created_at=T0,
                )
            ]
        ),
        issuer=ISSUER,
        audience=AUDIENCE,
        clock=env.clock,
    )

    token = foreign.issue(ACCESS, subject="usr_1").token

    assert rejected(env, token) == "rejected by PyJWT: InvalidSignatureError"


# --------------------------------------------------------------------------- claims


def test_an_expired_token_is_rejected(env: Env) -> None:
    token = env.service.issue(ACCESS, subject="usr_1", ttl=timedelta(minutes=5)).token
    env.clock.now = T0 + timedelta(minutes=5)

    assert rejected(env, token) == "expired"


def test_leeway_accepts_a_token_expired_within_it(env: Env) -> None:
    service = TokenService(
        env.ring, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=30, clock=env.clock
    )
    token = service.issue(ACCESS, subject="usr_1", ttl=timedelta(minutes=5)).token
    env.clock.now = T0 + timedelta(minutes=5, seconds=20)

    assert service.verify(token, ACCESS)["sub"] == "usr_1"


def test_a_token_with_a_future_nbf_is_rejected(env: Env) -> None:
    now = int(T0.timestamp())
    token = ed25519_token(our_header(env), claims(nbf=now + 60), env.private_key)

    assert rejected(env, token) == "not yet valid (nbf)"


def test_a_token_issued_in_the_future_is_rejected(env: Env) -> None:
    now = int(T0.timestamp())
    token = ed25519_token(our_header(env), claims(iat=now + 60, nbf=now), env.private_key)

    assert rejected(env, token) == "issued in the future (iat)"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"])
def test_a_token_missing_a_required_claim_is_rejected(env: Env, claim: str) -> None:
    token = ed25519_token(our_header(env), claims(**{claim: None}), env.private_key)

    assert rejected(env, token) == "rejected by PyJWT: MissingRequiredClaimError"


@pytest.mark.parametrize("exp", ["9999999999", 9_999_999_999.5, True])
def test_a_non_integer_exp_is_rejected(env: Env, exp: Any) -> None:
    token = ed25519_token(our_header(env), claims(exp=exp), env.private_key)

    assert rejected(env, token) == "exp is not an integer"


@pytest.mark.parametrize(
    "aud", ["other-api", f"{AUDIENCE}:mfa", [AUDIENCE, "other-api"], ""], ids=repr
)
def test_a_wrong_audience_is_rejected(env: Env, aud: Any) -> None:
    token = ed25519_token(our_header(env), claims(aud=aud), env.private_key)

    rejected(env, token)


@pytest.mark.parametrize("iss", ["https://evil.example", "https://tillpay.test/", 1])
def test_a_foreign_issuer_is_rejected(env: Env, iss: Any) -> None:
    token = ed25519_token(our_header(env), claims(iss=iss), env.private_key)

    rejected(env, token)


def test_an_empty_subject_is_rejected(env: Env) -> None:
    token = ed25519_token(our_header(env), claims(sub=""), env.private_key)

    rejected(env, token)


def test_an_mfa_pending_token_is_not_an_access_token(env: Env) -> None:
    token = env.service.issue(MFA_PENDING, subject="usr_1").token

    assert rejected(env, token, ACCESS) == "wrong token type"


def test_an_access_token_is_not_an_mfa_pending_token(env: Env) -> None:
    token = env.service.issue(ACCESS, subject="usr_1").token

    assert rejected(env, token, MFA_PENDING) == "wrong token type"


def test_an_mfa_audience_under_an_access_typ_is_rejected(env: Env) -> None:
    token = ed25519_token(our_header(env), claims(aud=f"{AUDIENCE}:mfa"), env.private_key)

    assert rejected(env, token) == "rejected by PyJWT: InvalidAudienceError"


@pytest.mark.parametrize("typ", ["JWT", "AT+JWT", None])
def test_a_generic_or_missing_typ_is_rejected(env: Env, typ: str | None) -> None:
    header = {k: v for k, v in our_header(env, typ=typ).items() if v is not None}

    assert rejected(env, ed25519_token(header, claims(), env.private_key)) == "wrong token type"


# --------------------------------------------------------------------------- format


def test_jws_json_serialization_is_rejected(env: Env) -> None:
    header, payload, signature = segments(env.service.issue(ACCESS, subject="usr_1").token)
    general = json.dumps(
        {"payload": payload, "signatures": [{"protected": header, "signature": signature}]}
    )

    assert rejected(env, general) == "not compact JWS serialization"


@pytest.mark.parametrize("char", ["{", '"', " ", "=", "+", "/", "\n"], ids=repr)
def test_a_token_containing_a_non_base64url_character_is_rejected(env: Env, char: str) -> None:
    header, payload, signature = segments(env.service.issue(ACCESS, subject="usr_1").token)

    token = f"{header}.{payload}{char}.{signature}"

    assert rejected(env, token) == "not compact JWS serialization"


@pytest.mark.parametrize("extra", [".", ".AAAA", ".AAAA.AAAA"], ids=["4-dots", "4-segs", "5-segs"])
def test_a_token_with_more_than_three_segments_is_rejected(env: Env, extra: str) -> None:
    token = env.service.issue(ACCESS, subject="usr_1").token

    assert rejected(env, token + extra) == "not compact JWS serialization"


def test_an_over_long_token_is_rejected_even_if_validly_signed(env: Env) -> None:
    token = env.service.issue(ACCESS, subject="usr_1", extra={"pad": "x" * MAX_TOKEN_LENGTH}).token

    assert rejected(env, token) == "token too long"


@pytest.mark.parametrize("token", [None, b"a.b.c", 42, ""])
def test_a_non_string_or_empty_token_is_rejected(env: Env, token: Any) -> None:
    rejected(env, token)


@given(
    garbage=st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_-]{0,80}(\.[A-Za-z0-9_-]{0,80}){2}")
)
def test_arbitrary_input_only_ever_raises_invalid_token(garbage: str) -> None:
    key = generate_signing_key()
    service = TokenService(KeyRing([key]), issuer=ISSUER, audience=AUDIENCE)

    with pytest.raises(InvalidToken):
        service.verify(garbage, ACCESS)


# --------------------------------------------------------------------------- rotation


def test_a_rotated_ring_signs_with_the_newest_key_and_verifies_both(env: Env) -> None:
    old_token = env.service.issue(ACCESS, subject="usr_1").token
    new_key = generate_signing_key(now=T0)
    rotated = TokenService(
        KeyRing([env.key, new_key]), issuer=ISSUER, audience=AUDIENCE, clock=env.clock
    )

    new_token = rotated.issue(ACCESS, subject="usr_1").token

    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert rotated.verify(old_token, ACCESS)["sub"] == "usr_1"
    assert rotated.verify(new_token, ACCESS)["sub"] == "usr_1"


def test_a_token_signed_by_a_dropped_key_is_rejected(env: Env) -> None:
    old_token = env.service.issue(ACCESS, subject="usr_1").token
    after_drop = TokenService(
        KeyRing([generate_signing_key(now=T0)]), issuer=ISSUER, audience=AUDIENCE, clock=env.clock
    )

    with pytest.raises(InvalidToken, match="unknown kid"):
        after_drop.verify(old_token, ACCESS)


def test_a_verify_only_key_verifies_but_never_signs(env: Env) -> None:
    token = env.service.issue(ACCESS, subject="usr_1").token
    public_only = SigningKey(
        kid=env.key.kid, private_key=None, public_key=env.key.public_key, created_at=T0
    )
    ring = KeyRing([public_only])
    service = TokenService(ring, issuer=ISSUER, audience=AUDIENCE, clock=env.clock)

    assert service.verify(token, ACCESS)["sub"] == "usr_1"
    with pytest.raises(LookupError):
        service.issue(ACCESS, subject="usr_1")


def test_the_newest_private_key_signs_even_if_a_newer_verify_only_key_exists(env: Env) -> None:
    newer = generate_signing_key(now=T0 + timedelta(days=1))
    newer_public = SigningKey(newer.kid, None, newer.public_key, newer.created_at)

    assert KeyRing([newer_public, env.key]).signing_key is env.key


def test_a_ring_refuses_duplicate_kids(env: Env) -> None:
    with pytest.raises(ValueError, match="duplicate kid"):
        KeyRing([env.key, env.key])


def test_ring_lookup_ignores_over_long_kids(env: Env) -> None:
    assert env.ring.get(env.key.kid) is env.key
    assert env.ring.get(env.key.kid + "x" * 100) is None


# --------------------------------------------------------------------------- keys and JWKS


def test_generated_kids_are_random_and_prefixed() -> None:
    kids = {generate_signing_key().kid for _ in range(50)}

    assert len(kids) == 50
    assert all(k.startswith("key_") and len(k) == 26 for k in kids)


def test_jwks_lists_every_key_without_private_material(env: Env) -> None:
    newer = generate_signing_key(now=T0)
    jwks = KeyRing([env.key, newer]).jwks()

    assert [k["kid"] for k in jwks["keys"]] == [newer.kid, env.key.kid]
    for jwk in jwks["keys"]:
        assert "d" not in jwk
        assert jwk | {"x": "", "kid": ""} == {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "",
            "kid": "",
            "alg": "EdDSA",
            "use": "sig",
        }


def test_a_published_jwk_verifies_our_tokens_with_a_standard_library(env: Env) -> None:
    wall_clock_service = TokenService(env.ring, issuer=ISSUER, audience=AUDIENCE)
    token = wall_clock_service.issue(ACCESS, subject="usr_1").token
    verifier = jwt.PyJWK(public_jwk(env.key))

    got = jwt.decode(token, verifier, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)

    assert got["sub"] == "usr_1"


def test_signing_key_refuses_a_mismatched_key_pair() -> None:
    with pytest.raises(ValueError, match="does not match"):
        SigningKey(
            kid="key_a",
            private_key=Ed25519PrivateKey.generate(),
            public_key=Ed25519PrivateKey.generate().public_key(),
            created_at=T0,
        )


@pytest.mark.parametrize("kid", ["", "a/b", "x" * 65, "key a"])
def test_signing_key_refuses_an_unsafe_kid(kid: str) -> None:
    private = Ed25519PrivateKey.generate()
    with pytest.raises(ValueError, match="kid"):
        SigningKey(kid=kid, private_key=private, public_key=private.public_key(), created_at=T0)


def test_signing_key_repr_hides_the_private_key(env: Env) -> None:
    assert "private_key" not in repr(env.key)


@pytest.mark.parametrize("encoding", ["raw", "pem"])
def test_public_keys_round_trip_through_raw_and_pem(env: Env, encoding: str) -> None:
    raw = serialize_public_key(env.key.public_key)
    data = (
        raw
        if encoding == "raw"
        else env.key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    assert serialize_public_key(load_public_key(data)) == raw


def test_loading_a_non_ed25519_pem_fails() -> None:
    pem = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    with pytest.raises(ValueError, match="Ed25519"):
        load_public_key(pem)


# --------------------------------------------------------------------------- key encryption


def raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def test_private_key_encryption_round_trips(env: Env) -> None:
    blob = encrypt_private_key(env.private_key, env.key.kid, SECRET)

    restored = decrypt_private_key(blob, env.key.kid, SECRET)

    assert raw_private(restored) == raw_private(env.private_key)


def test_encrypted_blob_hides_the_key_and_uses_a_fresh_nonce(env: Env) -> None:
    first = encrypt_private_key(env.private_key, env.key.kid, SECRET)
    second = encrypt_private_key(env.private_key, env.key.kid, SECRET)

    assert first != second
    assert raw_private(env.private_key) not in first


def test_decrypting_with_the_wrong_secret_fails(env: Env) -> None:
    blob = encrypt_private_key(env.private_key, env.key.kid, SECRET)

    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(blob, env.key.kid, b"t" * 32)


def test_a_blob_moved_to_another_kid_fails(env: Env) -> None:
    blob = encrypt_private_key(env.private_key, env.key.kid, SECRET)

    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(blob, "key_other", SECRET)


@pytest.mark.parametrize("position", [0, 1, 13, -1], ids=["version", "nonce", "body", "tag"])
def test_a_tampered_blob_fails(env: Env, position: int) -> None:
    blob = bytearray(encrypt_private_key(env.private_key, env.key.kid, SECRET))
    blob[position] ^= 0x01

    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(bytes(blob), env.key.kid, SECRET)


def test_a_truncated_blob_fails(env: Env) -> None:
    blob = encrypt_private_key(env.private_key, env.key.kid, SECRET)

    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(blob[:8], env.key.kid, SECRET)


def test_a_short_server_secret_is_refused(env: Env) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt_private_key(env.private_key, env.key.kid, b"short")


# --------------------------------------------------------------------------- remembered verifications


def _verified_twice(env: Env) -> str:
    token = env.service.issue(ACCESS, subject="usr_1", session_id="ses_1").token
    env.service.verify(token, ACCESS)
    env.service.verify(token, ACCESS)
    return token


def test_a_remembered_token_still_expires(env: Env) -> None:
    token = _verified_twice(env)
    env.clock.now = T0 + ACCESS.default_ttl + timedelta(seconds=1)
    assert rejected(env, token) == "expired"


def test_a_remembered_token_is_refused_once_its_key_left_the_ring(env: Env) -> None:
    token = _verified_twice(env)
    verified = env.service._verified
    other = generate_signing_key(now=T0)
    service = TokenService(
        KeyRing([other]), issuer=ISSUER, audience=AUDIENCE, clock=env.clock, verified=verified
    )
    with pytest.raises(InvalidToken):
        service.verify(token, ACCESS)


def test_a_remembered_access_token_is_still_not_another_kind(env: Env) -> None:
    token = _verified_twice(env)
    assert rejected(env, token, MFA_PENDING) == "wrong token type"


def test_changing_returned_claims_does_not_change_what_is_remembered(env: Env) -> None:
    token = _verified_twice(env)
    env.service.verify(token, ACCESS)["sub"] = "usr_attacker"
    assert env.service.verify(token, ACCESS)["sub"] == "usr_1"


def test_the_remembered_tokens_are_bounded() -> None:
    verified = VerifiedTokens(size=3)
    key = generate_signing_key(now=T0)
    for n in range(10):
        verified.put(f"t{n}", ACCESS, {"n": n}, key)
    ring = KeyRing([key])
    assert [verified.get(f"t{n}", ACCESS, ring) is not None for n in range(10)] == [False] * 7 + [
        True
    ] * 3
