"""Properties of the payment and refund state tables and of the ledger's arithmetic."""

from __future__ import annotations

import itertools
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.payments.helpers import GOOD_CARD, Checkout
from tillpay.kit.db import Database, create_engine
from tillpay.kit.ids import new_id
from tillpay.ledger import service as ledger
from tillpay.ledger.service import Line, UnbalancedTransaction, allocate, check_balanced
from tillpay.payments.models import PaymentStatus as P
from tillpay.payments.models import RefundStatus as R
from tillpay.payments.state import can_move, can_move_refund
from tillpay.settings import Settings

payment_statuses = st.sampled_from(list(P))
refund_statuses = st.sampled_from(list(R))
CURRENCIES = ["USD", "EUR", "JPY"]

# ------------------------------------------------------------------------ state tables


@given(payment_statuses, st.booleans())
def test_nothing_moves_a_succeeded_attempt(target: P, confirmed: bool) -> None:
    assert not can_move(P.SUCCEEDED, target, confirmed_by_provider=confirmed)


@given(st.sampled_from([P.FAILED, P.CANCELED, P.EXPIRED]), payment_statuses, st.booleans())
def test_a_failed_attempt_moves_only_to_a_success_the_provider_confirmed(
    current: P, target: P, confirmed: bool
) -> None:
    allowed = can_move(current, target, confirmed_by_provider=confirmed)
    assert allowed is (target is P.SUCCEEDED and confirmed)


@given(st.sampled_from([R.SUCCEEDED, R.FAILED]), refund_statuses)
def test_succeeded_and_failed_refunds_are_final(current: R, target: R) -> None:
    assert not can_move_refund(current, target)


# ------------------------------------------------------------------------ allocate

totals = st.integers(min_value=0, max_value=10**12)
weight_lists = st.lists(st.integers(0, 10**9), min_size=1, max_size=12).filter(
    lambda weights: sum(weights) > 0
)


@given(totals, weight_lists)
def test_allocate_always_adds_up_to_the_total(total: int, weights: list[int]) -> None:
    assert sum(allocate(total, weights)) == total


@given(totals, weight_lists)
def test_allocate_gives_each_part_within_one_unit_of_its_exact_share(
    total: int, weights: list[int]
) -> None:
    for part, weight in zip(allocate(total, weights), weights, strict=True):
        assert abs(part - Fraction(total * weight, sum(weights))) < 1


@given(totals, weight_lists)
def test_allocate_never_gives_a_negative_part(total: int, weights: list[int]) -> None:
    assert min(allocate(total, weights)) >= 0


@given(st.data(), weight_lists)
def test_allocate_never_gives_a_part_more_than_its_weight(
    data: st.DataObject, weights: list[int]
) -> None:
    total = data.draw(st.integers(0, sum(weights)), label="total")
    for part, weight in zip(allocate(total, weights), weights, strict=True):
        assert part <= weight


@given(totals, weight_lists)
def test_allocate_is_deterministic(total: int, weights: list[int]) -> None:
    assert allocate(total, weights) == allocate(total, list(weights))


# ------------------------------------------------------------------------ check_balanced


@st.composite
def balanced_lines(draw: st.DrawFn) -> list[Line]:
    """At least two lines, in one or more currencies, summing to zero per currency."""
    lines: list[Line] = []
    for currency in draw(st.lists(st.sampled_from(CURRENCIES), min_size=1, unique=True)):
        amounts = draw(st.lists(st.integers(-(10**15), 10**15), min_size=1, max_size=5))
        amounts.append(-sum(amounts))
        lines += [Line(f"test:{i}", "test", None, currency, a) for i, a in enumerate(amounts)]
    return draw(st.permutations(lines))


@given(balanced_lines())
def test_check_balanced_accepts_lines_summing_to_zero_per_currency(lines: list[Line]) -> None:
    check_balanced(lines)


@given(balanced_lines(), st.data())
def test_check_balanced_rejects_any_currency_not_summing_to_zero(
    lines: list[Line], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(lines) - 1), label="index")
    delta = data.draw(st.integers(-(10**6), 10**6).filter(bool), label="delta")
    lines[index] = replace(lines[index], amount=lines[index].amount + delta)
    with pytest.raises(UnbalancedTransaction):
        check_balanced(lines)


@given(balanced_lines(), st.data())
def test_check_balanced_rejects_float_amounts_even_when_they_balance(
    lines: list[Line], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(lines) - 1), label="index")
    lines[index] = replace(lines[index], amount=float(lines[index].amount))  # type: ignore[arg-type]
    with pytest.raises(UnbalancedTransaction):
        check_balanced(lines)


@given(balanced_lines(), st.booleans())
def test_check_balanced_rejects_bool_amounts_even_when_they_balance(
    lines: list[Line], flag: bool
) -> None:
    currency = lines[0].currency
    lines += [
        Line("test:bool", "test", None, currency, flag),
        Line("test:x", "test", None, currency, -int(flag)),
    ]
    with pytest.raises(UnbalancedTransaction):
        check_balanced(lines)


@given(st.sampled_from(CURRENCIES), st.integers(-(10**6), 10**6))
def test_check_balanced_rejects_a_single_entry(currency: str, amount: int) -> None:
    with pytest.raises(UnbalancedTransaction):
        check_balanced([Line("test:0", "test", None, currency, amount)])


# ------------------------------------------------------------------------ ledger in a database


@pytest.fixture
async def database(make_settings: Callable[..., Settings]) -> AsyncIterator[Database]:
    db = Database(create_engine(make_settings()))
    yield db
    await db.dispose()


@dataclass(frozen=True)
class Pay:
    """Capture an order whose lines belong to these vendors (None: the platform)."""

    currency: str
    lines: list[tuple[str | None, int]]


@dataclass(frozen=True)
class PartialRefund:
    """Refund part of one of the payments so far (``pick`` chooses which)."""

    pick: int


@dataclass
class Captured:
    currency: str
    shares: dict[str | None, int]
    refunded: dict[str | None, int]

    @property
    def remaining(self) -> int:
        return sum(self.shares.values()) - sum(self.refunded.values())


vendor_lines = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(1, 10**6)),
    min_size=1,
    max_size=4,
)
operations = st.lists(
    st.one_of(
        st.builds(Pay, st.sampled_from(CURRENCIES), vendor_lines),
        st.builds(PartialRefund, st.integers(0, 100)),
    ),
    min_size=1,
    max_size=8,
)


async def post(db: Database, kind: str, lines: list[Line]) -> None:
    async with db.session() as session, session.begin():
        await ledger.post(
            session, kind=kind, reference_type=kind, reference_id=new_id(kind[:3]), lines=lines
        )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(operations, st.data())
async def test_payments_and_refunds_keep_the_ledger_balanced_and_the_clearing_exact(
    database: Database, ops: list[Pay | PartialRefund], data: st.DataObject
) -> None:
    # Accounts of their own per example: a fresh provider name and vendor ids.
    provider, tag = f"prop{secrets.token_hex(6)}", secrets.token_hex(6)
    captured: list[Captured] = []
    expected: dict[str, int] = defaultdict(int)
    for op in ops:
        if isinstance(op, Pay):
            shares: dict[str | None, int] = defaultdict(int)
            for vendor, amount in op.lines:
                shares[None if vendor is None else tag + vendor] += amount
            total = sum(shares.values())
            await post(
                database,
                "payment",
                [
                    ledger.clearing(provider, op.currency, total),
                    *[ledger.vendor_payable(v, op.currency, -a) for v, a in shares.items()],
                ],
            )
            captured.append(Captured(op.currency, dict(shares), {}))
            expected[op.currency] += total
            continue
        refundable = [p for p in captured if p.remaining > 0]
        if not refundable:
            continue
        payment = refundable[op.pick % len(refundable)]
        amount = data.draw(st.integers(1, payment.remaining), label="refund")
        owners = sorted(payment.shares, key=lambda v: v or "")
        parts = allocate(amount, [payment.shares[v] - payment.refunded.get(v, 0) for v in owners])
        await post(
            database,
            "refund",
            [
                ledger.clearing(provider, payment.currency, -amount),
                *[
                    ledger.vendor_payable(v, payment.currency, part)
                    for v, part in zip(owners, parts, strict=True)
                ],
            ],
        )
        for owner, part in zip(owners, parts, strict=True):
            payment.refunded[owner] = payment.refunded.get(owner, 0) + part
        expected[payment.currency] -= amount

    async with database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []
        balances = {b.code: b.balance for b in await ledger.balances(session)}
    for currency in CURRENCIES:
        assert balances.get(f"provider_clearing:{provider}:{currency}", 0) == expected[currency]


# ------------------------------------------------------------------------ refund reversals


def capture_lines(
    provider: str, currency: str, shares: dict[str | None, int], *, applied: bool
) -> list[Line]:
    """What a capture posts: the clearing against the vendors' shares, or against
    unapplied_payments when the order could not take the money."""
    total = sum(shares.values())
    held = (
        [ledger.vendor_payable(v, currency, -a) for v, a in shares.items()]
        if applied
        else [ledger.unapplied(currency, -total)]
    )
    return [ledger.clearing(provider, currency, total), *held]


@st.composite
def refund_plans(draw: st.DrawFn) -> tuple[dict[str | None, int], list[int]]:
    """Vendor shares of a capture and the refunds that add up to all of it."""
    lines = draw(vendor_lines)
    shares: dict[str | None, int] = defaultdict(int)
    for vendor, amount in lines:
        shares[vendor] += amount
    total = sum(shares.values())
    cuts = sorted(draw(st.sets(st.integers(1, total - 1), max_size=5)) if total > 1 else set())
    bounds = [0, *cuts, total]
    return dict(shares), [b - a for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200)
@given(refund_plans(), st.booleans(), st.sampled_from(CURRENCIES))
def test_refund_reversals_mirror_the_capture_and_a_full_refund_zeroes_every_account(
    plan: tuple[dict[str | None, int], list[int]], applied: bool, currency: str
) -> None:
    shares, refunds = plan
    capture = capture_lines("prop", currency, shares, applied=applied)
    accounts = {line.account for line in capture}
    reversed_so_far: dict[str, int] = defaultdict(int)
    for amount in refunds:
        lines = ledger.reversal(capture, reversed_so_far, amount)
        check_balanced(lines)
        assert {line.account for line in lines} <= accounts
        for line in lines:
            reversed_so_far[line.account] += line.amount
        for original in capture:
            # Never more back from an account than the capture put there.
            net = original.amount + reversed_so_far[original.account]
            assert 0 <= net * (1 if original.amount > 0 else -1) <= abs(original.amount)
    assert all(original.amount + reversed_so_far[original.account] == 0 for original in capture)


@given(refund_plans(), st.booleans())
def test_a_reversal_beyond_what_the_capture_still_holds_is_refused(
    plan: tuple[dict[str | None, int], list[int]], applied: bool
) -> None:
    shares, _ = plan
    capture = capture_lines("prop", "USD", shares, applied=applied)
    with pytest.raises(ValueError, match="exceeds"):
        ledger.reversal(capture, {}, sum(shares.values()) + 1)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(refund_plans(), st.booleans())
async def test_capture_then_full_refund_through_the_ledger_returns_every_account_to_zero(
    database: Database, plan: tuple[dict[str | None, int], list[int]], applied: bool
) -> None:
    shares, refunds = plan
    provider, tag = f"prop{secrets.token_hex(6)}", secrets.token_hex(6)
    owned = {None if v is None else tag + v: a for v, a in shares.items()}
    payment_id, refund_ids = new_id("pay"), list[str]()
    async with database.session() as session, session.begin():
        await ledger.post(
            session,
            kind="payment",
            reference_type="payment",
            reference_id=payment_id,
            lines=capture_lines(provider, "USD", owned, applied=applied),
        )
    for amount in refunds:
        refund_id = new_id("rfd")
        async with database.session() as session, session.begin():
            capture = await ledger.posted(session, kind="payment", reference_ids=[payment_id])
            earlier = await ledger.posted(session, kind="refund", reference_ids=refund_ids)
            lines = ledger.reversal(capture, {x.account: x.amount for x in earlier}, amount)
            await ledger.post(
                session,
                kind="refund",
                reference_type="refund",
                reference_id=refund_id,
                lines=lines,
            )
        refund_ids.append(refund_id)
    async with database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []
        touched = await ledger.posted(
            session, kind="payment", reference_ids=[payment_id]
        ) + await ledger.posted(session, kind="refund", reference_ids=refund_ids)
        net: dict[str, int] = defaultdict(int)
        for line in touched:
            net[line.account] += line.amount
    assert set(net.values()) == {0}


# ------------------------------------------------------------------------ refunds end to end


async def test_refunding_a_two_vendor_order_in_parts_settles_each_vendor_exactly(
    checkout: Checkout,
) -> None:
    shop, client = checkout.shop, checkout.client
    customer, vendors = await shop.customer(), [await shop.vendor(), await shop.vendor()]
    for vendor in vendors:
        item = await shop.product(vendor, price=1000)
        await shop.add_to_cart(customer, item["variants"][0]["id"])
    order = (await shop.checkout(customer)).json()
    payment = (await checkout.pay(customer, order["id"])).json()
    await checkout.submit_card(payment, GOOD_CARD)
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()
    admin = await shop.accounts.admin()

    # Two one-unit refunds cannot split evenly; each must not come from the same vendor.
    for amount in (1, 1, None):
        refunded = await client.post(
            f"/v1/payments/{payment['id']}/refunds",
            json={"amount": amount, "reason": "requested_by_customer"},
            headers={**admin.headers, "Idempotency-Key": secrets.token_hex(8)},
        )
        assert refunded.status_code == 201, refunded.text

    accounts = (await client.get("/v1/admin/ledger/accounts", headers=admin.headers)).json()
    payable = {a["owner_id"]: a["balance"] for a in accounts if a["kind"] == "vendor_payable"}
    assert payable == {vendors[0].user_id: 0, vendors[1].user_id: 0}
