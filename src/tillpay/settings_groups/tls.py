"""TLS settings: the certificate `tillpay serve` presents and the CA of its clients."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, field_validator, model_validator


class TlsSettings(BaseModel):
    """HTTPS served by the process itself, optionally with mutual TLS."""

    tls_cert_file: Path | None = Field(
        None,
        description="Certificate (PEM, chain after the leaf) that `tillpay serve` presents; "
        "with `TLS_KEY_FILE` it serves HTTPS itself, TLS 1.2 or later.",
    )
    tls_key_file: Path | None = Field(
        None, description="Private key (PEM, unencrypted) of `TLS_CERT_FILE`."
    )
    tls_client_ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM): clients must present a certificate signed by "
        "one of them (mutual TLS); needs `TLS_CERT_FILE`.",
    )

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file")
    @classmethod
    def _check_readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"{str(value)!r} is not a file")
        if not os.access(value, os.R_OK):
            raise ValueError(f"{str(value)!r} is not readable")
        return value

    @model_validator(mode="after")
    def _check_tls_pairing(self) -> Self:
        # Refused in every environment: half a configuration would serve plain HTTP (or no
        # client check) while the operator believes otherwise.
        cert, key, client_ca = self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file
        if (cert is None) != (key is None):
            raise ValueError("TILLPAY_TLS_CERT_FILE and TILLPAY_TLS_KEY_FILE: set both or neither")
        if client_ca is not None and cert is None:
            raise ValueError(
                "TILLPAY_TLS_CLIENT_CA_FILE: client certificates need TLS; set "
                "TILLPAY_TLS_CERT_FILE and TILLPAY_TLS_KEY_FILE"
            )
        if cert is not None and key is not None:
            _check_loads(cert, key, client_ca)
        return self

    @property
    def tls_on(self) -> bool:
        return self.tls_cert_file is not None


def _check_loads(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Build the server's context now: a mismatched key or a file that is no PEM fails with
    a line naming the setting, not a traceback from uvicorn."""
    from tillpay.kit.http.tls import server_context

    try:
        server_context(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(
            f"TILLPAY_TLS_CERT_FILE/TILLPAY_TLS_KEY_FILE: not a matching PEM certificate and "
            f"unencrypted key ({getattr(exc, 'reason', None) or exc})"
        ) from None
    if client_ca is not None:
        try:
            ssl.create_default_context(cafile=client_ca)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(
                f"TILLPAY_TLS_CLIENT_CA_FILE: no PEM CA certificate "
                f"({getattr(exc, 'reason', None) or exc})"
            ) from None
