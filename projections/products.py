"""The ingest API's reads of the read models: OpenECPDS's monitoring summary of a product.

The ingest API (``producers.api``) imports this module and nothing else of ``projections``, as
the portal imports ``projections.portal`` (the read-only query modules DESIGN.md §2 allows a
producer). Rules kept here: nothing here writes; a product is OpenECPDS's ``stream/time/step/
type`` key; its summary is its generation status as last set (``product_status``) and, per
destination, the files of its latest cycle and how many were delivered (``product_transfers``),
for every step and type of the stream and time asked unless those are named too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections.db import DEFAULT_SCHEMA
from projections.portal import pool

__all__ = ["DEFAULT_SCHEMA", "ProductReads", "pool"]

_STATUS: LiteralString = (
    'SELECT product, stream, "time", step, type, status, status_at, changed_by'
    ' FROM product_status WHERE stream = %(stream)s AND "time" = %(time)s'
    " AND (%(step)s::text IS NULL OR step = %(step)s)"
    " AND (%(type)s::text IS NULL OR type = %(type)s)"
)
# the latest cycle of each product of the stream and time, then its files per destination
_CYCLES: LiteralString = (
    "WITH p AS (SELECT * FROM product_transfers WHERE product LIKE %(prefix)s"
    " AND (%(step)s::text IS NULL OR split_part(product, '/', 3) = %(step)s)"
    " AND (%(type)s::text IS NULL OR split_part(product, '/', 4) = %(type)s)),"
    " latest AS (SELECT product, max(base_time) AS base_time FROM p GROUP BY product)"
    " SELECT p.product, p.destination, latest.base_time, count(*) AS files,"
    " count(p.delivered_at) AS delivered, max(p.arrived_at) AS last_arrival,"
    " max(p.delivered_at) AS last_delivery"
    " FROM p JOIN latest ON latest.product = p.product"
    " AND latest.base_time IS NOT DISTINCT FROM p.base_time"
    " GROUP BY p.product, p.destination, latest.base_time ORDER BY p.product, p.destination"
)


@dataclass(frozen=True, slots=True)
class ProductReads:
    """The summary queries, on one pool (``projections.portal.pool``)."""

    connections: AsyncConnectionPool

    async def summary(
        self, stream: str, time: str, step: str | None = None, type_: str | None = None
    ) -> list[dict[str, Any]]:
        """Each product of ``stream`` at ``time`` (and ``step``/``type`` when given): its
        generation status and, per destination, its latest cycle's files (module docstring)."""
        asked = {"stream": stream, "time": time, "step": step, "type": type_}
        prefix = f"{_like(stream)}/{_like(time)}/%"
        async with self.connections.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_STATUS, asked)
            statuses = {row["product"]: row for row in await cur.fetchall()}
            await cur.execute(_CYCLES, {**asked, "prefix": prefix})
            cycles = await cur.fetchall()
        products: dict[str, dict[str, Any]] = {}
        for name in sorted({*statuses, *(row["product"] for row in cycles)}):
            parts = [*name.split("/"), "", "", ""][:4]
            status = statuses.get(name)
            products[name] = {
                "product": name,
                "stream": parts[0],
                "time": parts[1],
                "step": parts[2],
                "type": parts[3],
                "status": status["status"] if status else None,
                "statusAt": _iso(status["status_at"]) if status else None,
                "setBy": status["changed_by"] if status else None,
                "destinations": [],
            }
        for row in cycles:
            products[row["product"]]["destinations"].append(
                {
                    "destination": row["destination"],
                    "cycle": _iso(row["base_time"]),
                    "files": row["files"],
                    "delivered": row["delivered"],
                    "lastArrival": _iso(row["last_arrival"]),
                    "lastDelivery": _iso(row["last_delivery"]),
                }
            )
        return list(products.values())


def _like(text: str) -> str:
    """``text`` matched literally by LIKE."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
