"""Argon2id cost: the OWASP minimum everywhere but in the test environment."""

from __future__ import annotations

import pytest

from tillpay.accounts.runtime import build_runtime
from tillpay.kit.db import Database
from tillpay.notifications.mail import build_mailer
from tillpay.settings import ConfigurationError, Settings

STRONG = "p" * 20 + "0123456789abcdefghijklmnop"


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("password_hash_memory_kib", 19455, "TILLPAY_PASSWORD_HASH_MEMORY_KIB"),
        ("password_hash_iterations", 1, "TILLPAY_PASSWORD_HASH_ITERATIONS"),
    ],
)
def test_hashing_below_the_owasp_minimum_is_refused_outside_tests(
    environment: str, field: str, value: int, variable: str
) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Settings(environment=environment, secret_key=STRONG, **{field: value})


async def test_the_test_environment_may_hash_cheaply() -> None:
    settings = Settings(
        environment="test",
        secret_key=STRONG,
        password_hash_memory_kib=64,
        password_hash_iterations=1,
    )
    database = Database.from_settings(settings)
    try:
        runtime = build_runtime(settings, database, mailer=build_mailer(settings), limiter=None)
        digest = await runtime.hasher.hash("correct horse battery staple")
    finally:
        await database.dispose()
    assert digest.startswith("$argon2id$v=19$m=64,t=1,p=1$")


def test_the_default_cost_is_the_owasp_minimum() -> None:
    settings = Settings(environment="development", secret_key=STRONG)
    assert (settings.password_hash_memory_kib, settings.password_hash_iterations) == (19456, 2)
