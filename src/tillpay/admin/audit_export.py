"""The audit trail streamed as NDJSON or CSV: one row at a time, in chain order.

Each line carries the chain columns too (``seq``, ``prev_hash``, ``hash``), so an export
of the whole trail can be checked against the chain away from the database.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Row

from tillpay.audit.chain import format_time
from tillpay.audit.queries import EXPORT_COLUMNS, AuditFilter, stream_events
from tillpay.kit.db import Database

NDJSON = "application/x-ndjson"
CSV = "text/csv"
JSON = "application/json"


def negotiate(accept: str | None) -> str:
    """The first type of ``accept`` this route serves (JSON pages unless an export is
    asked for; quality values are not weighed)."""
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (NDJSON, CSV, JSON):
            return media
        if media in ("*/*", "application/*"):
            return JSON
    return JSON


def _plain(row: Row[Any]) -> dict[str, Any]:
    values = row._asdict()
    values["occurred_at"] = format_time(values["occurred_at"])
    return values


def _ndjson_line(row: Row[Any]) -> str:
    return json.dumps(_plain(row), ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # A cell a spreadsheet would run as a formula (=, +, -, @) is quoted with a leading '.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def _lines(database: Database, where: AuditFilter, media: str) -> AsyncIterator[str]:
    if media == CSV:
        yield _csv_line(list(EXPORT_COLUMNS))
    async with database.read_connection() as conn:
        async for row in stream_events(conn, where):
            if media == CSV:
                yield _csv_line([_csv_cell(v) for v in _plain(row).values()])
            else:
                yield _ndjson_line(row)


def export(database: Database, where: AuditFilter, media: str) -> StreamingResponse:
    """Stream the events ``where`` selects as ``media`` (NDJSON or CSV)."""
    headers = {"Content-Disposition": f'attachment; filename="audit-events.{_suffix(media)}"'}
    return StreamingResponse(_lines(database, where, media), media_type=media, headers=headers)


def _suffix(media: str) -> str:
    return "csv" if media == CSV else "ndjson"
