"""Test-only routes attached to a real app to exercise the perimeter and the unit of work.

They live in tests, never in the product: a probe route is added with ``make_client(setup=…)``.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from tillpay.kit.db import DbSession
from tillpay.kit.errors import CommittedRefusal, Conflict
from tillpay.kit.logging import get_logger
from tillpay.kit.money import AmountMinor, CurrencyCode

log = get_logger("tests.probe")

probe_metadata = MetaData()
probe_table = Table(
    "uow_probe",
    probe_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(50), nullable=False),
)


class EchoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: AmountMinor
    currency: CurrencyCode
    note: str | None = None


class EchoOut(BaseModel):
    amount: int
    currency: str


def install_probes(app: FastAPI) -> None:
    router = APIRouter(prefix="/v1/probe")

    @router.post("/echo", response_model=EchoOut)
    async def echo(body: EchoIn) -> EchoOut:
        return EchoOut(amount=body.amount, currency=body.currency)

    @router.post("/large")
    async def large(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError(
            "SELECT password_hash FROM users WHERE email='a@b.c' /srv/tillpay/secret.py "
            "sk_live_51Habcdefghijklmnop"
        )

    @router.post("/log")
    async def log_secrets(request: Request) -> dict[str, str]:
        body = await request.json()
        log.info("probe.received", body=body, headers=dict(request.headers))
        return {"status": "logged"}

    @router.post("/write")
    async def write(
        session: DbSession, label: str, fail: bool = False, refuse: bool = False
    ) -> dict[str, str]:
        await session.execute(insert(probe_table).values(label=label))
        if fail:
            raise Conflict("the probe was told to fail after writing")
        if refuse:
            raise CommittedRefusal(Conflict("the probe refused, keeping its write"))
        return {"label": label}

    @router.get("/rows")
    async def rows(session: DbSession) -> list[str]:
        result = await session.execute(select(probe_table.c.label))
        return [r[0] for r in result]

    app.include_router(router)
