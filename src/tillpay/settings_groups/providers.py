"""Settings of the payment providers: Cryptomus, Paystack, Razorpay and Stripe.

A provider is enabled when its credentials are set."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from tillpay.settings_safety import ip_entry_problem


def checked_ip_list(value: list[str]) -> list[str]:
    """The stripped entries of a webhook source-IP list; refuses malformed entries."""
    problems = [p for entry in value if (p := ip_entry_problem(entry, strict=False))]
    if problems:
        raise ValueError("; ".join(problems))
    return [entry.strip() for entry in value]


class CryptomusSettings(BaseModel):
    """Cryptomus (crypto invoices)."""

    cryptomus_merchant_id: str | None = Field(
        None, description="Cryptomus merchant UUID (the `merchant` header); enables Cryptomus."
    )
    cryptomus_payment_api_key: SecretStr | None = Field(
        None,
        description="Cryptomus PAYMENT API key: signs requests and verifies webhooks.",
    )
    cryptomus_api_base: str = Field(
        "https://api.cryptomus.com", description="Cryptomus API base URL."
    )
    cryptomus_currencies: list[str] = Field(
        default_factory=lambda: ["EUR", "USD"],
        description="Currencies Cryptomus invoices are priced in (JSON list of codes).",
    )
    cryptomus_invoice_lifetime_seconds: int | None = Field(
        None,
        ge=300,
        le=43200,
        description="Invoice lifetime (300 to 43200 s); default: the reservation TTL, at least 300.",
    )
    cryptomus_refund_is_subtract: bool = Field(
        True, description="Refund fee from the merchant balance (`true`) or from the refund."
    )
    cryptomus_webhook_ips: list[str] = Field(
        default_factory=list,
        description="Optional source IPs/CIDRs allowed to post Cryptomus webhooks (empty: any).",
    )

    @field_validator("cryptomus_webhook_ips")
    @classmethod
    def _check_cryptomus_webhook_ips(cls, value: list[str]) -> list[str]:
        return checked_ip_list(value)


class PaystackSettings(BaseModel):
    """Paystack."""

    paystack_secret_key: SecretStr | None = Field(
        None,
        description="Paystack secret key (`sk_test_…`/`sk_live_…`): authenticates API calls and "
        "verifies webhooks (Paystack has no separate webhook secret); enables Paystack.",
    )
    paystack_api_base: str = Field("https://api.paystack.co", description="Paystack API base URL.")
    paystack_currencies: list[str] = Field(
        default_factory=lambda: ["GHS", "KES", "NGN", "USD", "ZAR"],
        description="Currencies to charge through Paystack (JSON list; each must be enabled "
        "on the Paystack integration).",
    )
    paystack_timeout_seconds: float | None = Field(
        None, gt=0, le=60, description="Timeout of one Paystack call; default the provider timeout."
    )
    paystack_webhook_ips: list[str] = Field(
        default_factory=list,
        description="Optional source IPs/CIDRs allowed to post Paystack webhooks (empty: any); "
        "the client IP is the one resolved through `TRUSTED_PROXIES`.",
    )

    @field_validator("paystack_webhook_ips")
    @classmethod
    def _check_paystack_webhook_ips(cls, value: list[str]) -> list[str]:
        return checked_ip_list(value)


class RazorpaySettings(BaseModel):
    """Razorpay."""

    razorpay_key_id: str | None = Field(
        None,
        description="Razorpay API key id (`rzp_test_…`/`rzp_live_…`); public: it goes to Checkout.",
    )
    razorpay_key_secret: SecretStr | None = Field(
        None,
        description="Razorpay API key secret: authenticates API calls and verifies the Checkout "
        "callback signature. With the key id and webhook secret, enables Razorpay.",
    )
    razorpay_webhook_secret: SecretStr | None = Field(
        None,
        description="Secret of the Razorpay Dashboard webhook (not the key secret): verifies "
        "`X-Razorpay-Signature`.",
    )
    razorpay_previous_webhook_secret: SecretStr | None = Field(
        None,
        description="The webhook secret being rotated out, still accepted (Razorpay signs "
        "retries of older events with it).",
    )
    razorpay_api_base: str = Field("https://api.razorpay.com", description="Razorpay API base URL.")
    razorpay_currencies: list[str] = Field(
        default_factory=lambda: ["INR"],
        description="Currencies to charge through Razorpay (JSON list; international currencies "
        "must be enabled on the Razorpay account).",
    )
    razorpay_timeout_seconds: float | None = Field(
        None, gt=0, le=60, description="Timeout of one Razorpay call; default the provider timeout."
    )


class StripeSettings(BaseModel):
    """Stripe (Checkout Sessions or Elements)."""

    stripe_secret_key: SecretStr | None = Field(
        None,
        description="Stripe secret key (`sk_test_…`/`sk_live_…`, or a restricted `rk_…` key); "
        "with a webhook secret it enables Stripe. Has a `_FILE` variant.",
    )
    stripe_webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Stripe webhook signing secrets (`whsec_…`, JSON list); a signature under "
        "any of them is accepted (rotation). The `_FILE` variant may list one per line.",
    )
    stripe_publishable_key: str | None = Field(
        None, description="Publishable key (`pk_…`) handed to the browser in the Elements flow."
    )
    stripe_flow: Literal["checkout", "payment_intent"] = Field(
        "checkout",
        description="`checkout`: redirect to a Stripe Checkout Session; `payment_intent`: a "
        "client secret for embedded Stripe Elements.",
    )
    stripe_api_base: str = Field("https://api.stripe.com", description="Stripe API base URL.")
    stripe_currencies: list[str] = Field(
        default_factory=lambda: [
            *("AUD", "CAD", "CHF", "DKK", "EUR", "GBP"),
            *("JPY", "NOK", "NZD", "SEK", "SGD", "USD"),
        ],
        description="Currencies to charge through Stripe (JSON list of ISO codes).",
    )
    stripe_timeout_seconds: float | None = Field(
        None, gt=0, le=80, description="Timeout of one Stripe call; default the provider timeout."
    )
    stripe_max_network_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="SDK retries (same idempotency key) after network errors, 409 and 5xx.",
    )
    stripe_checkout_expires_seconds: int = Field(
        1800,
        ge=1800,
        le=86400,
        description=(
            "Checkout Session lifetime (Stripe: 30 min to 24 h). tillpay keeps it a margin "
            "inside that window (clock skew and SDK retries resend the same expires_at): "
            "at least 1800 + 60 + retries x (timeout + 5) s, at most 86340 s."
        ),
    )
