"""Commerce settings: stock reservations and cart limits."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CommerceSettings(BaseModel):
    """Limits of carts and checkout."""

    reservation_ttl_seconds: int = Field(
        900, ge=60, le=86400, description="How long checkout holds stock awaiting payment."
    )
    cart_line_max_quantity: int = Field(
        100, ge=1, le=999, description="Largest quantity of one item in a cart line."
    )
