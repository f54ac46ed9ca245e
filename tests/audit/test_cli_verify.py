"""`tillpay audit verify`: exit 0 on an intact chain, 1 naming the first broken link."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from typer.testing import CliRunner, Result

from tests.audit.helpers import tamper, write_events
from tillpay.cli import app as cli
from tillpay.kit.db import Database
from tillpay.settings import Settings


async def _verify(settings: Settings) -> Result:
    env = {
        "TILLPAY_DATABASE_URL": settings.database_url.get_secret_value(),
        "TILLPAY_SECRET_KEY": settings.secret_key.get_secret_value(),
        "TILLPAY_ENVIRONMENT": "test",
        "TILLPAY_DATA_DIR": str(settings.data_dir),
    }
    invoke = functools.partial(CliRunner().invoke, cli, ["audit", "verify"], env=env)
    return await asyncio.to_thread(invoke)  # the command runs its own event loop


async def test_verify_exits_0_on_an_intact_chain_and_1_at_the_first_broken_link(
    make_settings: Callable[..., Settings], clean_db: None
) -> None:
    settings = make_settings()
    database = Database.from_settings(settings)
    try:
        await write_events(database, 3)
        intact = await _verify(settings)
        assert intact.exit_code == 0, intact.output
        assert "intact: 3 entries, head seq 3" in intact.stdout
        await tamper(database, "UPDATE audit_events SET details = '{}' WHERE seq = 2")
        broken = await _verify(settings)
    finally:
        await database.dispose()
    assert broken.exit_code == 1
    assert "broken at seq 2" in broken.stderr
    assert "modified" in broken.stderr
    assert "1 intact before it" in broken.stderr
