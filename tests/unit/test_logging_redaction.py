"""The logging layer: real rendered output never carries secrets or card numbers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from tillpay.kit.logging import configure_logging, get_logger

SECRET = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _capture(*, json_lines: bool = True) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(json=json_lines, stream=stream)
    return stream


def _events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _only_event(stream: io.StringIO) -> dict[str, Any]:
    (event,) = _events(stream)
    return event


def _luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        digit = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str(-total % 10)


def test_password_keyword_argument_is_redacted() -> None:
    out = _capture()
    get_logger("t").info("login", password=SECRET)
    assert _only_event(out)["password"] == "[REDACTED]"
    assert SECRET not in out.getvalue()


def test_secret_keys_in_nested_dicts_and_lists_are_redacted() -> None:
    out = _capture()
    get_logger("t").info("cfg", provider={"stripe": [{"stripe_secret_key": SECRET}]})
    assert _only_event(out)["provider"] == {"stripe": [{"stripe_secret_key": "[REDACTED]"}]}


def test_authorization_and_cookie_headers_are_redacted_other_headers_kept() -> None:
    out = _capture()
    headers = {"Authorization": f"Bearer {SECRET}", "Cookie": f"sid={SECRET}", "Accept": "*/*"}
    get_logger("t").info("request", headers=headers)
    assert _only_event(out)["headers"] == {
        "Authorization": "[REDACTED]",
        "Cookie": "[REDACTED]",
        "Accept": "*/*",
    }


def test_asgi_style_header_pairs_are_redacted() -> None:
    out = _capture()
    get_logger("t").info("scope", headers=[(b"x-api-key", SECRET.encode()), (b"host", b"shop")])
    assert SECRET not in out.getvalue()
    assert _only_event(out)["headers"][0][1] == "[REDACTED]"


def test_token_type_stays_visible_while_tokens_are_redacted() -> None:
    out = _capture()
    get_logger("t").info("issued", token_type="bearer", refresh_token=SECRET)
    event = _only_event(out)
    assert (event["token_type"], event["refresh_token"]) == ("bearer", "[REDACTED]")


def test_keys_merely_resembling_secret_words_are_kept() -> None:
    out = _capture()
    get_logger("t").info("audit", company="acme", shipping="dhl", authorization_decision="deny")
    event = _only_event(out)
    assert (event["company"], event["shipping"], event["authorization_decision"]) == (
        "acme",
        "dhl",
        "deny",
    )


def test_bearer_token_in_message_is_redacted() -> None:
    out = _capture()
    get_logger("t").info(f"upstream sent Bearer {SECRET}")
    assert _only_event(out)["event"] == "upstream sent Bearer [REDACTED]"


def test_jwt_in_value_is_redacted() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9.MEUCIQDx-_abc"
    out = _capture()
    get_logger("t").info("decoded", raw=f"got {jwt} from client")
    assert _only_event(out)["raw"] == "got [REDACTED_JWT] from client"


@pytest.mark.parametrize(
    ("card_number", "masked"),
    [
        ("4242 4242 4242 4242", "****4242"),
        ("4000-0000-0000-0002", "****0002"),
        ("5555555555554444", "****4444"),
    ],
)
def test_luhn_valid_card_numbers_are_masked_to_last_four(card_number: str, masked: str) -> None:
    out = _capture()
    get_logger("t").info(f"charging card {card_number} now")
    assert _only_event(out)["event"] == f"charging card {masked} now"


def test_card_number_logged_as_integer_is_masked() -> None:
    out = _capture()
    get_logger("t").info("card", number=4242424242424242)
    assert _only_event(out)["number"] == "****4242"


def test_sixteen_digit_order_number_failing_luhn_is_kept() -> None:
    out = _capture()
    get_logger("t").info("order placed", order_number="1234567812345678")
    assert _only_event(out)["order_number"] == "1234567812345678"


def test_cvv_and_cvc_keys_are_redacted() -> None:
    out = _capture()
    get_logger("t").info("card", card={"cvc": "123", "CVV2": 456, "exp_month": 12})
    assert _only_event(out)["card"] == {"cvc": "[REDACTED]", "CVV2": "[REDACTED]", "exp_month": 12}


def test_database_url_password_is_redacted() -> None:
    out = _capture()
    get_logger("t").info("db", url=f"postgresql+asyncpg://tillpay:{SECRET}@db:5432/tillpay")
    assert _only_event(out)["url"] == "postgresql+asyncpg://tillpay:[REDACTED]@db:5432/tillpay"


def test_sensitive_query_parameters_are_redacted() -> None:
    out = _capture()
    get_logger("t").info("callback", url=f"https://shop/cb?access_token={SECRET}&sig=ab12&page=2")
    assert (
        _only_event(out)["url"] == "https://shop/cb?access_token=[REDACTED]&sig=[REDACTED]&page=2"
    )


def test_sensitive_pair_inside_a_harmless_value_is_redacted() -> None:
    out = _capture()
    get_logger("t").info(f"redirect next=/pay?token={SECRET}&step=2")
    assert _only_event(out)["event"] == "redirect next=/pay?token=[REDACTED]&step=2"


def test_provider_secret_keys_in_text_are_redacted() -> None:
    out = _capture()
    get_logger("t").info("using sk_live_51Habc and whsec_Zx9 for stripe, sk_test_9f3 for paystack")
    assert _only_event(out)["event"] == (
        "using [REDACTED] and [REDACTED] for stripe, [REDACTED] for paystack"
    )


def test_stdlib_logger_lines_are_rendered_and_redacted() -> None:
    out = _capture()
    logging.getLogger("sqlalchemy.engine").warning("connect %s", f"postgresql://app:{SECRET}@db/x")
    event = _only_event(out)
    assert (event["logger"], event["level"]) == ("sqlalchemy.engine", "warning")
    assert event["event"] == "connect postgresql://app:[REDACTED]@db/x"


def test_exception_text_is_logged_and_redacted() -> None:
    out = _capture()
    try:
        raise ValueError(f"provider rejected password={SECRET}")
    except ValueError:
        get_logger("t").exception("charge failed")
    exception = _only_event(out)["exception"]
    assert "ValueError: provider rejected password=[REDACTED]" in exception
    assert SECRET not in out.getvalue()


def test_other_root_handlers_receive_the_redacted_event(caplog: pytest.LogCaptureFixture) -> None:
    _capture()
    get_logger("t").info("login", password=SECRET)
    assert SECRET not in caplog.text
    logged = caplog.records[0].msg
    assert isinstance(logged, dict)
    assert logged["password"] == "[REDACTED]"


def test_object_with_failing_repr_does_not_break_logging() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError

    out = _capture()
    get_logger("t").info("odd", value=Broken())
    assert _only_event(out)["value"] == "<unrepresentable Broken>"


def test_unknown_objects_are_rendered_with_repr_and_redacted() -> None:
    class Login:
        def __repr__(self) -> str:
            return f"Login(email='a@b.c', password='{SECRET}')"

    out = _capture()
    get_logger("t").info("body", body=Login())
    assert _only_event(out)["body"] == "Login(email='a@b.c', password='[REDACTED]')"


def test_json_output_is_one_line_per_event_with_standard_fields() -> None:
    out = _capture()
    structlog.contextvars.bind_contextvars(request_id="req_123")
    log = get_logger("t")
    log.info("first")
    log.warning("second\r\ninjected")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert {k: first[k] for k in ("event", "level", "request_id")} == {
        "event": "first",
        "level": "info",
        "request_id": "req_123",
    }
    assert datetime.fromisoformat(first["timestamp"]).utcoffset() == timedelta(0)
    assert second["event"] == "second\r\ninjected"


def test_console_output_escapes_crlf_in_values() -> None:
    out = _capture(json_lines=False)
    get_logger("t").info("user\r\n2030-01-01 [info] forged", username="eve\nforged")
    assert out.getvalue().count("\n") == 1
    assert "user\\r\\n2030-01-01" in out.getvalue()


def test_console_exception_block_lines_are_prefixed() -> None:
    out = _capture(json_lines=False)
    try:
        raise ValueError("x\nforged line")
    except ValueError:
        get_logger("t").exception("boom")
    first, *block = out.getvalue().rstrip("\n").split("\n")
    assert "boom" in first
    assert block
    assert all(line.startswith("  | ") for line in block)


def test_configuring_twice_does_not_duplicate_lines() -> None:
    configure_logging(json=True, stream=io.StringIO())
    out = _capture()
    get_logger("t").info("once")
    assert len(out.getvalue().splitlines()) == 1


def test_events_below_configured_level_are_dropped() -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="WARNING", stream=stream)
    get_logger("t").info("hidden")
    logging.getLogger("alembic").info("hidden too")
    assert stream.getvalue() == ""


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(json=True, level="LOUD")


luhn_valid_16 = st.text("0123456789", min_size=15, max_size=15).map(
    lambda body: body + _luhn_check_digit(body)
)
# Text glued directly onto the digits would make a different, longer number.
text_before = st.text().filter(lambda s: s[-1:] not in set("0123456789"))
text_after = st.text().filter(lambda s: s[:1] not in set("0123456789"))


@given(
    before=text_before,
    card_number=luhn_valid_16,
    separator=st.sampled_from(["", " ", "-"]),
    after=text_after,
)
def test_luhn_valid_card_number_in_any_text_never_appears_in_output(
    before: str, card_number: str, separator: str, after: str
) -> None:
    written = separator.join(card_number[i : i + 4] for i in range(0, 16, 4))
    out = _capture()
    get_logger("t").info(before + written + after)
    rendered = out.getvalue()
    assert card_number not in rendered
    assert written not in rendered
