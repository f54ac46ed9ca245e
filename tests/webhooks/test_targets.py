"""SSRF protection of merchant webhooks: at registration and again at every delivery, every
address a URL resolves to must be public; the connection goes to the checked address."""

from __future__ import annotations

import ipaddress

import pytest

from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tests.webhooks.conftest import Hooks, webhook_settings
from tests.webhooks.receiver import Receiver
from tillpay.merchant_webhooks import targets

REFUSED_URLS = [
    "https://127.0.0.1/hooks",
    "https://10.0.0.1/hooks",
    "https://172.16.5.4/hooks",
    "https://192.168.1.10/hooks",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/hooks",
    "https://0.0.0.0/hooks",
    "https://224.0.0.1/hooks",
    "https://[::1]/hooks",
    "https://[::ffff:127.0.0.1]/hooks",
    "https://[::ffff:10.0.0.1]/hooks",
    "https://[fd00:ec2::254]/hooks",
    "https://[fe80::1]/hooks",
    "https://[fc00::1]/hooks",
    # A name that resolves to loopback (the hosts file; no network needed).
    "https://localhost/hooks",
    "https://localhost./hooks",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_registering_a_private_or_special_address_is_refused(
    make_client: ClientFactory, clean_db: None, mail_dir, url: str
) -> None:
    async with make_client() as client:
        refused = await Hooks(client, mail_dir).register(url, ["order.paid"])
    assert assert_problem(refused, 422)["code"] == "webhook_url_refused"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://93.184.215.14/hooks", "https"),
        ("https://user:pw@93.184.215.14/hooks", "credentials"),
        ("https://93.184.215.14:8443/hooks", "Port 8443"),
        ("https://93.184.215.14/hooks#frag", "fragment"),
        ("https:///hooks", "no host"),
        ("https://no-such-host.invalid/hooks", "does not resolve"),
    ],
)
async def test_a_malformed_or_unresolvable_url_is_refused_with_the_reason(
    make_client: ClientFactory, clean_db: None, mail_dir, url: str, reason: str
) -> None:
    async with make_client() as client:
        refused = await Hooks(client, mail_dir).register(url, ["order.paid"])
    problem = assert_problem(refused, 422)
    assert problem["code"] == "webhook_url_refused"
    assert reason in str(problem["detail"])


def test_production_accepts_https_only() -> None:
    with pytest.raises(targets.TargetRefused, match="https"):
        targets.parse("http://93.184.215.14/hooks", allow_http=False, allowed_ports=[80, 443])
    assert targets.parse("http://93.184.215.14/h?x=1", allow_http=True, allowed_ports=[80])[3] == (
        "/h?x=1"
    )


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"],
)
def test_public_addresses_are_accepted(address: str) -> None:
    assert targets.address_problem(ipaddress.ip_address(address)) is None


async def test_a_name_is_refused_when_any_of_its_addresses_is_private(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DNS answer mixing a public and a private address is refused as a whole."""

    async def both(host: str, port: int) -> list[targets.IPAddress]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.1.2.3")]

    monkeypatch.setattr(targets, "resolve", both)
    with pytest.raises(targets.TargetRefused, match="private"):
        await targets.check(
            "https://mixed.example/hooks",
            allow_http=False,
            allow_private=False,
            allowed_ports=[443],
        )


async def test_an_endpoint_that_turned_private_is_refused_at_delivery(
    make_client: ClientFactory, clean_db: None, receiver: Receiver, mail_dir
) -> None:
    """Registered while private targets were allowed; a process without that setting
    refuses to deliver there (the check runs at every delivery) and sends nothing."""
    async with make_client(**webhook_settings(receiver)) as permissive:
        hooks = Hooks(permissive, mail_dir)
        endpoint = await hooks.endpoint(receiver.url, ["order.paid"])
        customer = await hooks.checkout.shop.customer()
        await hooks.checkout.paid_order(customer)
        admin = await hooks.admin()

    async with make_client(
        **webhook_settings(receiver, webhooks_allow_private_targets=False)
    ) as strict:
        hooks = Hooks(strict, mail_dir)
        hooks._admin = admin
        await hooks.flush()
        [attempt] = await hooks.attempts(endpoint["id"])

    assert receiver.received == []
    assert "loopback" in attempt["error"]
    assert attempt["status_code"] is None


def test_production_refuses_allowing_private_targets() -> None:
    from tests.conftest import _build_settings
    from tillpay.kit.config import ConfigurationError

    with pytest.raises((ConfigurationError, ValueError), match="WEBHOOKS_ALLOW_PRIVATE_TARGETS"):
        _build_settings(environment="production", webhooks_allow_private_targets=True)
