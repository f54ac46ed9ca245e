"""Request and response bodies of the accounts API. Requests forbid unknown fields, so
mass assignment (`role`, `is_verified`, `totp_enabled` …) is a 422, never a silent write."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tillpay.accounts.models import AuthSession, Role

Email = Annotated[str, Field(min_length=3, max_length=320, examples=["ada@shop.example"])]
Password = Annotated[
    str, Field(min_length=1, max_length=1024, examples=["correct horse battery staple"])
]
OpaqueToken = Annotated[str, Field(min_length=16, max_length=512)]
TotpCode = Annotated[
    str, Field(min_length=6, max_length=8, pattern=r"^[0-9 ]+$", examples=["123456"])
]
RecoveryCodeText = Annotated[str, Field(min_length=10, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "ada@shop.example", "password": "correct horse battery staple"}]
        },
    )

    email: Email
    password: Password


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


class LoginIn(Strict):
    email: Email
    password: Password


class TokenPair(BaseModel):
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name
    access_token: str
    expires_in: int = Field(description="Access-token lifetime in seconds.")
    refresh_token: str
    refresh_expires_at: datetime
    session_id: str


class MfaRequired(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str = Field(description="Short-lived token for `POST /v1/auth/login/mfa`.")
    expires_in: int


class LoginMfaIn(Strict):
    mfa_token: Annotated[str, Field(min_length=10, max_length=4096)]
    code: TotpCode | None = None
    recovery_code: RecoveryCodeText | None = None

    @model_validator(mode="after")
    def _one_factor(self) -> LoginMfaIn:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("send exactly one of code or recovery_code")
        return self


class RefreshIn(Strict):
    refresh_token: OpaqueToken | None = Field(
        None, description="Omit when the refresh token travels in the `__Host-` cookie."
    )


class TokenIn(Strict):
    token: OpaqueToken


class ResetPasswordIn(Strict):
    token: OpaqueToken
    new_password: Password


class ForgotPasswordIn(Strict):
    email: Email


class ChangePasswordIn(Strict):
    current_password: Password
    new_password: Password


class ReauthenticateIn(Strict):
    password: Password | None = None
    code: TotpCode | None = None

    @model_validator(mode="after")
    def _one_factor(self) -> ReauthenticateIn:
        if (self.password is None) == (self.code is None):
            raise ValueError("send exactly one of password or code")
        return self


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    last_used_at: datetime
    ip: str | None
    user_agent: str | None
    mfa: bool
    current: bool

    @classmethod
    def of(cls, row: AuthSession, *, current: str) -> SessionOut:
        """``row`` as its owner sees it; ``current`` is the caller's own session id."""
        return cls(
            id=row.id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            ip=row.ip,
            user_agent=row.user_agent,
            mfa=row.mfa,
            current=row.id == current,
        )


class TotpEnrollOut(BaseModel):
    secret: str = Field(description="Base32 secret, for manual entry.")
    otpauth_uri: str
    qr_svg: str = Field(description="`data:` URI of an SVG QR code of the otpauth URI.")


class TotpConfirmIn(Strict):
    code: TotpCode


class TotpDisableIn(Strict):
    password: Password
    code: Annotated[str, Field(min_length=6, max_length=64)]


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once; store them safely.")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    email_verified: bool
    role: Role
    display_name: str | None
    totp_enabled: bool
    created_at: datetime


class ProfileUpdateIn(Strict):
    display_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class EmailChangeIn(Strict):
    new_email: Email


class AdminUserOut(UserOut):
    is_active: bool
    last_login_at: datetime | None


class AdminUserPage(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None


class AdminUserUpdateIn(Strict):
    role: Role | None = None
    is_active: bool | None = None


class RevokedCount(BaseModel):
    revoked: int
