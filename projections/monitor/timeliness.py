"""The timeliness grid: destinations x products, each cell coloured on OpenECPDS's lateness
scale for its latest cycle, linking to the transfers behind it; and the product status list.

Rules kept here: cells are computed from the read models (``product_transfers``,
``product_status``, the destinations' ``monitor.target``) with ``bus.timeliness``, the method
the watcher uses; the page pages destinations (``PAGE`` a page) so its cost does not grow with
their number. The grid is the one place the monitor reads the clock: a cycle whose prediction
has passed with nothing arrived or delivered is late *now*, which no event says.
Products are daily (the key holds the base time of day), so a cell's next cycle is its last
one plus a day. A page is rendered once for every viewer and made again at each projector
commit, or every ``TICK`` in the background (``VersionCache`` with ``refresh_after``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bus.events.products import Lateness
from bus.timeliness import WINDOW, Prediction, classify, predict, rank, target_seconds
from projections.monitor.cache import VersionCache
from projections.monitor.queries import Row

PAGE = 100  # destinations per page
TICK = 15  # seconds after which a grid is made again (within one projector commit)
HISTORY_DAYS = 2 * WINDOW + 5  # daily cycles read per cell: enough for WINDOW past cycles
CYCLE = timedelta(days=1)

LABELS: Mapping[Lateness, str] = {
    Lateness.NO_DATA: "no data",
    Lateness.WELL_AHEAD: "well ahead",
    Lateness.ON_TIME: "on time",
    Lateness.SLIGHTLY_LATE: "slightly late",
    Lateness.LATE: "late",
    Lateness.VERY_LATE: "very late",
    Lateness.CRITICAL: "critical",
}


@dataclass(frozen=True, slots=True)
class Cycle:
    """One cycle of a product at a destination, as the read models have it."""

    base: datetime
    arrived: float | None  # seconds after the base: the first file queued
    delivered: float | None  # seconds after the base: the last file delivered
    files: int
    done: int
    failed: int


@dataclass(frozen=True, slots=True)
class Cell:
    """A grid cell: the latest cycle (or the one now due) and its classes."""

    destination: str
    product: str
    base: datetime
    arrival: Lateness
    transfer: Lateness
    files: int
    done: int
    failed: int
    arrival_prediction: Prediction | None
    transfer_prediction: Prediction | None
    target_s: float | None

    @property
    def lateness(self) -> Lateness:
        """The worse of the two classes (the cell's colour)."""
        return max(self.arrival, self.transfer, key=rank)

    def predicted(self, which: Prediction | None) -> datetime | None:
        return which.at(self.base) if which is not None else None


@dataclass(frozen=True, slots=True)
class Grid:
    """The page: destinations in order, products in order, the cells that exist."""

    destinations: tuple[str, ...]
    products: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell] = field(default_factory=dict)


def _predictions(history: Sequence[Cycle]) -> tuple[Prediction | None, Prediction | None]:
    """Arrival and transfer predictions from past cycles (a transfer counts once complete)."""
    arrivals = [c.arrived for c in history if c.arrived is not None]
    deliveries = [c.delivered for c in history if c.delivered is not None and c.done == c.files]
    return predict(arrivals[-WINDOW:]), predict(deliveries[-WINDOW:])


def cell(
    destination: str,
    product: str,
    cycles: Sequence[Cycle],
    target_s: float | None,
    now: datetime,
) -> Cell:
    """The cell of one destination and product from its cycles (oldest first): the latest
    cycle, or the next one once its predicted arrival has passed with nothing of it here."""
    last = cycles[-1]
    expected, _ = _predictions(cycles)
    due = last.base + CYCLE
    if expected is not None and now > expected.at(due):
        shown, history = Cycle(due, None, None, 0, 0, 0), cycles
    else:
        shown, history = last, cycles[:-1]
    arrival_p, transfer_p = _predictions(history)
    in_cycle = (now - shown.base).total_seconds()
    complete = shown.files > 0 and shown.done == shown.files
    delivered = shown.delivered if complete else None
    return Cell(
        destination,
        product,
        shown.base,
        classify(shown.arrived, arrival_p, now=in_cycle),
        classify(delivered, transfer_p, target=target_s, now=in_cycle),
        shown.files,
        shown.done,
        shown.failed,
        arrival_p,
        transfer_p,
        target_s,
    )


def grid(
    destinations: Sequence[str],
    rows: Iterable[Row],
    targets: Mapping[str, float | None],
    now: datetime,
) -> Grid:
    """The grid from one row per cell: its cycles as arrays in base time order (bases in
    epoch seconds, arrival and delivery in seconds after the base: floats decode fast)."""
    by_cell: dict[tuple[str, str], list[Cycle]] = {}
    for r in rows:
        by_cell[(r["destination"], r["product"])] = [
            Cycle(datetime.fromtimestamp(b, UTC), a, d, n, ok, bad)
            for b, a, d, n, ok, bad in zip(
                r["bases"], r["arrived"], r["delivered"], r["files"], r["done"], r["failed"],
                strict=True,
            )
        ]  # fmt: skip
    cells = {
        key: cell(key[0], key[1], cycles, targets.get(key[0]), now)
        for key, cycles in by_cell.items()
    }
    products = tuple(sorted({p for _, p in by_cell}))
    return Grid(tuple(destinations), products, cells)


_DESTINATIONS = (
    "SELECT name, config->'properties' AS properties FROM destinations"
    " WHERE NOT removed AND (%s = '' OR name ILIKE %s) ORDER BY name LIMIT %s OFFSET %s"
)
_CYCLES = (
    "SELECT destination, product,"
    " array_agg(extract(epoch FROM base_time)::float8 ORDER BY base_time) AS bases,"
    " array_agg(extract(epoch FROM arrived - base_time)::float8 ORDER BY base_time) AS arrived,"
    " array_agg(extract(epoch FROM delivered - base_time)::float8 ORDER BY base_time)"
    " AS delivered, array_agg(files ORDER BY base_time) AS files,"
    " array_agg(done ORDER BY base_time) AS done, array_agg(failed ORDER BY base_time) AS failed"
    " FROM (SELECT destination, product, base_time, min(arrived_at) AS arrived,"
    " max(delivered_at) AS delivered, count(*)::int AS files,"
    " (count(*) FILTER (WHERE status = 'DONE'))::int AS done,"
    " (count(*) FILTER (WHERE status IN ('FAIL', 'STOP')))::int AS failed"
    " FROM product_transfers WHERE destination = ANY(%s) AND base_time >= %s"
    " AND (%s = '' OR product ILIKE %s) GROUP BY destination, product, base_time) c"
    " GROUP BY destination, product"
)
_CELL = (
    "SELECT p.transfer_id, p.base_time, p.arrived_at, p.delivered_at, p.status,"
    " t.target, t.host_id, t.last_error FROM product_transfers p"
    " LEFT JOIN transfers t ON t.transfer_id = p.transfer_id"
    " WHERE p.destination = %s AND p.product = %s ORDER BY p.base_time DESC NULLS LAST,"
    " p.arrived_at DESC LIMIT 500"
)
_STATUS = (
    "SELECT product, status, status_at, changed_at, changed_by FROM product_status"
    " ORDER BY product LIMIT 2000"
)


async def load_grid(
    queries: Any, now: datetime, search: str = "", product: str = "", page: int = 0
) -> Grid:
    """The grid of one page of destinations (their names matching ``search``)."""
    dests = await queries.rows(_DESTINATIONS, (search, f"%{search}%", PAGE, max(page, 0) * PAGE))
    names = [d["name"] for d in dests]
    targets = {d["name"]: target_seconds(d["properties"]) for d in dests}
    since = now - timedelta(days=HISTORY_DAYS)
    rows = await queries.rows(_CYCLES, (names, since, product, f"%{product}%"))
    return grid(names, rows, targets, now)


Render = Callable[..., Response]
Guard = Callable[..., Callable[[Request], Awaitable[Response]]]


def routes(state: Any, render: Render, signed_in: Guard) -> list[BaseRoute]:
    """``/timeliness`` (the grid) and ``/timeliness/cell`` (the transfers behind a cell)."""
    # made once for every viewer (2,000 cells cost ~80 ms to read, predict and render), again
    # at each projector commit or in the background every TICK (the clock classes the cells)
    grids: VersionCache[Markup] = VersionCache(refresh_after=TICK)

    async def page(request: Request, user: Any) -> Response:
        q = request.query_params
        search, product = q.get("q", "").strip(), q.get("product", "").strip()
        try:
            number = max(int(q.get("page", "0")), 0)
        except ValueError:
            number = 0

        async def make() -> Markup:
            found = await load_grid(state.queries, datetime.now(UTC), search, product, number)
            template = state.templates.env.get_template("_timeliness_grid.html")
            return Markup(  # noqa: S704 (an autoescaping template)
                template.render(
                    grid=found,
                    labels=LABELS,
                    q=search,
                    product=product,
                    page=number,
                    more=len(found.destinations) == PAGE,
                    statuses=await state.queries.rows(_STATUS),
                )
            )

        body = await grids.get((search, product, number), await state.queries.version(), make)
        return render(
            request, user, "timeliness.html", body=body, labels=LABELS, q=search, product=product
        )

    async def cell_page(request: Request, user: Any) -> Response:
        q = request.query_params
        destination, product = q.get("destination", ""), q.get("product", "")
        rows = await state.queries.rows(_CELL, (destination, product))
        return render(
            request,
            user,
            "timeliness_cell.html",
            destination=destination,
            product=product,
            rows=rows,
        )

    return [
        Route("/timeliness", signed_in(page)),
        Route("/timeliness/cell", signed_in(cell_page)),
    ]
