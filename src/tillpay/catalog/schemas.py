"""Catalog request/response bodies. Money is integer minor units; unknown fields are 422."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, model_validator

from tillpay.catalog.models import Product
from tillpay.kit.money import AmountMinor, CurrencyCode
from tillpay.kit.pagination import next_cursor

MAX_STOCK = 1_000_000
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Stock = Annotated[int, Field(strict=True, ge=0, le=MAX_STOCK)]


def _https_only(url: HttpUrl) -> HttpUrl:
    if url.scheme != "https":
        raise ValueError("image URLs must use https")
    if url.username or url.password:
        raise ValueError("image URLs must not contain credentials")
    return url


ImageUrl = Annotated[HttpUrl, AfterValidator(_https_only)]
Attributes = Annotated[dict[str, Annotated[str, Field(max_length=200)]], Field(max_length=20)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"sku": "KENTE-L", "title": "Long", "price_amount": 3900, "stock": 5}]
        },
    )

    sku: Sku
    title: Title | None = None
    price_amount: AmountMinor
    stock: Stock = 0
    attributes: Attributes = Field(default_factory=dict)


class ProductCreate(Strict):
    """A simple product gives ``sku``/``price_amount``/``stock``; one with variants gives
    ``variants`` instead."""

    title: Title
    description: Annotated[str, Field(max_length=10_000)] = ""
    currency: CurrencyCode
    image_urls: Annotated[list[ImageUrl], Field(max_length=10)] = Field(default_factory=list)
    attributes: Attributes = Field(default_factory=dict)
    sku: Sku | None = None
    price_amount: AmountMinor | None = None
    stock: Stock | None = None
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=100)] | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Ankara tote bag",
                    "description": "Hand-made, 40 by 35 cm.",
                    "currency": "NGN",
                    "sku": "TOTE-ANK-01",
                    "price_amount": 1250000,
                    "stock": 12,
                    "image_urls": ["https://cdn.shop.example/tote.jpg"],
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _simple_or_variants(self) -> ProductCreate:
        simple = (self.sku, self.price_amount)
        if self.variants is None:
            if any(v is None for v in simple):
                raise ValueError("give sku and price_amount, or a variants list")
        elif any(v is not None for v in (*simple, self.stock)):
            raise ValueError("give either sku/price_amount/stock or variants, not both")
        return self

    def variant_specs(self) -> list[VariantIn]:
        if self.variants is not None:
            return self.variants
        assert self.sku is not None
        assert self.price_amount is not None
        return [VariantIn(sku=self.sku, price_amount=self.price_amount, stock=self.stock or 0)]


class ProductUpdate(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"title": "Kente scarf", "active": False}]}
    )

    title: Title | None = None
    description: Annotated[str, Field(max_length=10_000)] | None = None
    image_urls: Annotated[list[ImageUrl], Field(max_length=10)] | None = None
    attributes: Attributes | None = None
    active: bool | None = None


class VariantUpdate(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"price_amount": 4200, "stock": 12}]}
    )

    title: Title | None = None
    price_amount: AmountMinor | None = None
    stock: Stock | None = None
    active: bool | None = None
    attributes: Attributes | None = None


class VariantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sku: str
    title: str | None
    price_amount: int
    stock: int
    active: bool
    attributes: dict[str, Any]


class ProductOut(BaseModel):
    # Built from a Product with its variants (a docstring would enter the OpenAPI).
    model_config = ConfigDict(from_attributes=True)

    id: str
    vendor_id: str | None
    title: str
    description: str = Field(description="Plain text; any markup is removed and `<>&` escaped.")
    currency: str
    active: bool
    image_urls: list[str]
    attributes: dict[str, Any]
    variants: list[VariantOut]
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None

    @classmethod
    def of(cls, products: list[Product], limit: int) -> ProductPage:
        """A page from ``limit + 1`` rows (the extra one says another page follows)."""
        return cls(
            items=[ProductOut.model_validate(p) for p in products[:limit]],
            next_cursor=next_cursor(products, limit),
        )
