"""Mail settings: the SMTP server, or the directory of `.eml` files without one."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator


class MailSettings(BaseModel):
    """How tillpay sends mail."""

    smtp_host: str | None = Field(None, description="SMTP server; unset writes `.eml` files.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP user name.")
    smtp_password: SecretStr | None = Field(
        None, description="SMTP password. Has a `_FILE` variant."
    )
    smtp_starttls: bool = Field(True, description="Require STARTTLS (port 587).")
    smtp_use_tls: bool = Field(False, description="Implicit TLS (port 465) instead of STARTTLS.")
    smtp_allow_plaintext: bool = Field(
        False, description="Allow SMTP without TLS (local relays only; refused in production)."
    )
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle to verify the SMTP server (system store when unset)."
    )
    smtp_timeout_seconds: float = Field(10.0, gt=0, description="SMTP timeout.")
    mail_from: str = Field("tillpay <no-reply@localhost>", description="From address of mail.")
    mail_dir: Path | None = Field(
        None, description="Where `.eml` files go without SMTP; default `<data_dir>/mail`."
    )
    admin_digest_enabled: bool = Field(
        True, description="Mail administrators a daily digest of the previous UTC day."
    )
    admin_digest_time: time = Field(
        time(6, 0),
        description="UTC time of day (`HH:MM`) from which the worker sends the digest.",
    )

    @field_validator("admin_digest_time")
    @classmethod
    def _utc_time_of_day(cls, value: time) -> time:
        # The digest is about UTC days: another offset would move its day's boundaries.
        if value.tzinfo is not None and value.utcoffset():
            raise ValueError("must be a UTC time of day (`HH:MM`, no offset)")
        return value.replace(tzinfo=None)
