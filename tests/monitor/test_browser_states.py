"""The monitor in Debian's headless Chromium over read models projected from real events: the
overview and the timeliness grid in four states (all on time, one late, one held, one
failing), each checked on the rendered page (colour classes, texts) and saved as a screenshot;
a hold never shown as a failure; and the charts drawn by the vendored uPlot with their axes,
under the monitor's CSP, with no error in the browser's console.

Each state is a pair of destinations (``s1-`` ... ``s4-``) with six regular daily cycles of a
product behind them; the page is narrowed to one pair with the search box, so one projected
schema holds every state.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    expect,
)

from bus.config.secrets import hash_password
from bus.events import Envelope, Event
from bus.events.base import DestinationStatus, TransferStatus
from bus.events.transfers import (
    DestinationStatusChanged,
    TransferFailed,
    TransferQueued,
    TransferSucceeded,
)
from bus.publisher import Publisher
from projections.migrate import migrate
from tests.bus.samples import sample
from tests.monitor.conftest import PASSWORDS, Monitor, ReadModels, monitor_config, serve
from tests.monitor.test_browser import browser
from tests.projections.support import create_topics, drop, project
from tests.timeliness.test_end_to_end import ends_of

__all__ = ["browser"]

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

HOUR = timedelta(hours=1)
MIB = 2**20
ON_TIME = {"ON_TIME", "WELL_AHEAD"}
LATE = {"SLIGHTLY_LATE", "LATE", "VERY_LATE", "CRITICAL"}
HOLD_REASON = "maintenance at the site until 06:00"


@dataclass(frozen=True)
class Fleet:
    """The events of the test destinations, built around one cycle base time."""

    today: datetime
    events: list[tuple[str, Event]]

    def _env(self, tid: str, at: datetime) -> Envelope:
        return Envelope(
            event_id=str(uuid.uuid4()), occurred_at=at, source="test", correlation_id=tid
        )

    def status(
        self,
        destination: str,
        status: DestinationStatus,
        at: datetime,
        reason: str = "",
        actor: str | None = None,
    ) -> None:
        """The destination's status set at ``at``: by an operator (``actor``) or, without
        one, by the scheduler."""
        event = sample(
            DestinationStatusChanged,
            envelope=self._env(destination, at),
            destination=destination,
            new_status=status,
            old_status=None,
            reason=reason,
            actor=actor,
            until=None,
        )
        self.events.append((destination, event))

    def cycle(
        self,
        destination: str,
        base: datetime,
        *,
        deliver: timedelta | None = 1.5 * HOUR,
        fail: bool = False,
        host: str = "host-a",
        stream: str = "oper",
    ) -> None:
        """The file of product ``stream`` of cycle ``base`` queued for ``destination`` an hour
        after it, then delivered ``deliver`` after it through ``host`` (or failed there)."""
        tid = f"{stream}-{base:%Y%m%d}-{destination}"
        queued = base + HOUR
        meta = {"stream": stream, "time": f"{base:%H}", "step": "24", "type": "fc"}
        self.events.append(
            (
                destination,
                sample(
                    TransferQueued,
                    envelope=self._env(tid, queued),
                    transfer_id=tid,
                    destination=destination,
                    status=TransferStatus.WAIT,
                    queue_time=queued,
                    expiry_time=base + 10 * 24 * HOUR,
                    size=50 * MIB,
                    metadata={**meta, "date": f"{base:%Y%m%d}"},
                ),
            )
        )
        if fail:
            failed = sample(
                TransferFailed,
                envelope=self._env(tid, queued + 0.2 * HOUR),
                transfer_id=tid,
                destination=destination,
                attempt=1,
                host_id=host,
                error_class="ConnectionLost",
                message=f"connect to {host}:21: connection refused",
                retriable=True,
            )
            self.events.append((destination, failed))
        elif deliver is not None:
            done = sample(
                TransferSucceeded,
                envelope=self._env(tid, base + deliver),
                transfer_id=tid,
                destination=destination,
                attempt=1,
                host_id=host,
                bytes_sent=50 * MIB,
                duration_ms=20_000,
                bytes_per_second=50 * MIB / 20,
            )
            self.events.append((destination, done))

    def regular(self, destination: str, host: str = "host-a") -> None:
        """Six past cycles delivered at the usual time, and the destination idle."""
        self.status(destination, DestinationStatus.WAIT, self.today - 7 * 24 * HOUR)
        for day in range(6, 0, -1):
            self.cycle(destination, self.today - timedelta(days=day), host=host)


def fleet(now: datetime) -> Fleet:
    """The four states' destinations (and one held after an error, for the hold test)."""
    today = (now - 4 * HOUR).replace(minute=0, second=0, microsecond=0)
    f = Fleet(today, [])
    for name in ("s1-alpha", "s1-beta", "s2-alpha", "s3-alpha", "s4-alpha"):
        f.regular(name)
        f.cycle(name, today)
    f.regular("s2-late", host="host-b")
    f.cycle("s2-late", today, deliver=2.5 * HOUR, host="host-b")
    f.regular("s3-held")
    f.cycle("s3-held", today)
    f.status("s3-held", DestinationStatus.HOLD, today + 2 * HOUR, reason=HOLD_REASON, actor="op1")
    f.regular("s4-failing", host="host-b")
    f.cycle("s4-failing", today, fail=True, host="host-b")
    f.status(
        "s4-failing",
        DestinationStatus.HOLD,
        today + 1.5 * HOUR,
        reason="all hosts failed 3 times",
    )
    # held by an operator right after a failed attempt: still a hold, not a failure
    f.regular("s5-held-after-error")
    f.cycle("s5-held-after-error", today, fail=True)
    f.status(
        "s5-held-after-error",
        DestinationStatus.HOLD,
        today + 1.5 * HOUR,
        reason=HOLD_REASON,
        actor="op1",
    )
    return f


@pytest.fixture(scope="module")
async def states(
    kafka: str, postgres: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Monitor]:
    """The monitor over a schema projected from ``fleet``'s events (an operator signed up)."""
    unique = uuid.uuid4().hex[:10]
    schema, prefix = f"st_{unique}", f"test.st{unique}"
    await migrate(postgres, schema)
    topics = [t for t in await create_topics(kafka, prefix) if t.endswith(".transfers")]
    built = fleet(datetime.now(UTC))
    async with Publisher(kafka, client_id="test-states") as publisher:
        await publisher.publish_many([(topics[0], key, e) for key, e in built.events])
    models = ReadModels(postgres, kafka, schema, prefix, tuple(topics), f"st-{unique}")
    await project(postgres, kafka, schema, models.projection, topics, await ends_of(kafka, topics))
    secrets = tmp_path_factory.mktemp("states-secrets")
    (secrets / "web-users").write_text(
        f"operator1:operator:{hash_password(PASSWORDS['operator'])}\n"
    )
    try:
        async with serve(monitor_config(models, secrets)) as url:
            yield Monitor(url, secrets, models)
    finally:
        await drop(postgres, schema)


@dataclass
class Console:
    """What the page said in the console (errors, CSP refusals) and uncaught exceptions."""

    errors: list[str]

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url')})")

    def thrown(self, error: Exception) -> None:
        self.errors.append(repr(error))


async def signed_in(browser: Browser, url: str) -> tuple[Page, Console]:
    """A page signed in as the operator, its console watched."""
    context = await browser.new_context(base_url=url, viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    said = Console([])
    page.on("console", said.console)
    page.on("pageerror", said.thrown)
    await page.goto("/login")
    await page.fill("input[name=login]", "operator1")
    await page.fill("input[name=password]", PASSWORDS["operator"])
    await page.click("button[type=submit]")
    await expect(page.locator("table.overview")).to_be_visible()
    return page, said


async def badges(page: Page, name: str) -> tuple[str, str, str, str]:
    """(status badge class, its text, health badge class, its text) of an overview row."""
    row = page.locator(f'tr[data-name="{name}"]')
    status, health = (
        row.locator("td").nth(1).locator(".badge"),
        row.locator("td").nth(2).locator(".badge"),
    )
    return (
        str(await status.get_attribute("class")),
        await status.inner_text(),
        str(await health.get_attribute("class")),
        await health.inner_text(),
    )


async def grid(page: Page) -> tuple[dict[str, str], dict[str, str]]:
    """The lateness of each destination's cell (checked to be its colour class too), and the
    cell's title (its classes and counts in words)."""
    cells: dict[str, str] = {}
    titles: dict[str, str] = {}
    for row in await page.locator("table.grid tbody tr").all():
        name = await row.locator("td").first.inner_text()
        cell = row.locator("td.cell").first
        lateness = str(await cell.get_attribute("data-lateness"))
        assert lateness in str(await cell.get_attribute("class")).split(), name
        cells[name], titles[name] = lateness, str(await cell.get_attribute("title"))
    return cells, titles


@pytest.mark.parametrize(
    ("state", "prefix"),
    [("on-time", "s1-"), ("one-late", "s2-"), ("one-held", "s3-"), ("one-failing", "s4-")],
)
async def test_overview_and_grid_in_four_states(
    browser: Browser, states: Monitor, tmp_path: Path, state: str, prefix: str
) -> None:
    """Given two destinations in a state, the overview's badges and the timeliness grid's
    colours say that state: all green and on time; one cell late while both destinations stay
    healthy; one neutral "On hold" with its reason, never red; one red "Failed" with the error
    as a sentence and its cell late with a failed transfer; each page saved as a screenshot."""
    page, said = await signed_in(browser, states.url)
    try:
        await page.goto(f"/?q={prefix}")
        await expect(page.locator("tr[data-name]")).to_have_count(2)
        rows = {n: await badges(page, n) for n in await _names(page)}
        notes = await page.locator("table.overview .note").all_inner_texts()
        errors = await page.locator("table.overview td.error .sentence").all_inner_texts()
        reds = await page.locator("table.overview .badge.red").count()
        await page.screenshot(path=str(tmp_path / f"{state}-overview.png"), full_page=True)
        await page.goto(f"/timeliness?q={prefix}")
        await expect(page.locator("table.grid tbody tr")).to_have_count(2)
        cells, titles = await grid(page)
        await page.screenshot(path=str(tmp_path / f"{state}-grid.png"), full_page=True)

        healthy = ("badge grey", "Idle", "badge green", "OK")
        if state == "on-time":
            assert set(rows.values()) == {healthy}
            assert set(cells.values()) <= ON_TIME
        elif state == "one-late":
            assert set(rows.values()) == {healthy}  # late is not failing
            assert cells["s2-late"] in LATE
            assert cells["s2-alpha"] in ON_TIME
        elif state == "one-held":
            assert rows["s3-alpha"] == healthy
            assert rows["s3-held"] == ("badge neutral", "On hold", "badge neutral", "Held")
            assert notes == [HOLD_REASON]
            assert reds == 0
            assert set(cells.values()) <= ON_TIME
        else:
            assert rows["s4-alpha"] == healthy
            assert rows["s4-failing"] == ("badge red", "Failed", "badge red", "Critical")
            assert len(errors) == 1
            assert errors[0].startswith("Could not connect to host-b")
            assert cells["s4-failing"] in LATE
            assert cells["s4-alpha"] in ON_TIME
            said_late = r"transfer (slightly late|late|very late|critical)"
            assert re.search(said_late, titles["s4-failing"])
            assert "0/1 delivered" in titles["s4-failing"]
        if state != "one-failing":
            assert errors == []
        for shot in ("overview", "grid"):
            assert (tmp_path / f"{state}-{shot}.png").stat().st_size > 10_000
        assert said.errors == []
    finally:
        await page.context.close()


async def _names(page: Page) -> list[str]:
    """The destinations of the overview's rows, in order."""
    rows = page.locator("tr[data-name]")
    return [str(await r.get_attribute("data-name")) for r in await rows.all()]


async def test_a_hold_is_never_shown_as_a_failure(browser: Browser, states: Monitor) -> None:
    """Destinations an operator held, one of them right after a failed attempt, show a neutral
    "On hold" badge with the reason and health "Held" on the overview and their own page, are
    listed under the "on hold" filter and never under "failing", and nothing about them is red;
    the failing destination is the one under "failing"."""
    page, said = await signed_in(browser, states.url)
    held = ("s3-held", "s5-held-after-error")
    try:
        await page.goto("/")
        await expect(page.locator("tr[data-name]")).to_have_count(9)
        for name in held:
            row = page.locator(f'tr[data-name="{name}"]')
            assert await badges(page, name) == (
                "badge neutral",
                "On hold",
                "badge neutral",
                "Held",
            )
            assert await row.get_attribute("data-health") == "held"
            await expect(row.locator(".note")).to_have_text(HOLD_REASON)
            await expect(row.locator(".badge.red")).to_have_count(0)
            assert "Failed" not in await row.inner_text()

        await page.goto("/?status=failing")
        failing = set(await _names(page))
        assert failing == {"s4-failing"}
        await page.goto("/?status=held")
        assert set(await _names(page)) == set(held)

        for name in held:
            await page.goto(f"/destinations/{name}")
            title = page.locator("h1 .badge")
            await expect(title).to_have_text("On hold")
            await expect(title).to_have_class("badge neutral")
            await expect(page.locator("dl.facts")).to_contain_text(f"{HOLD_REASON} (by op1)")
        assert said.errors == []
    finally:
        await page.context.close()


async def test_charts_draw_with_axes_and_units_under_the_csp(
    browser: Browser, states: Monitor, tmp_path: Path
) -> None:
    """The charts page loads uPlot from /static/vendor/ (no CDN, no CSP refusal, no console
    error) and draws the last day: throughput by destination and by host in a unit fit for
    50 MiB a day, latency p50/p95/p99 in minutes, failed attempts; each with a UTC time axis
    and a value axis (described in words for screen readers); the week range reads
    day-and-hour ticks."""
    page, said = await signed_in(browser, states.url)
    try:
        loaded = await page.request.get("/static/vendor/uplot/uPlot.iife.min.js")
        assert loaded.status == 200
        assert "javascript" in loaded.headers["content-type"]
        assert (await page.request.get("/static/vendor/uplot/../package.json")).status == 404

        answer = await page.request.get("/api/v1/charts?range=day&destination=s2-late")
        body = await answer.json()
        assert (body["range"], body["step"], len(body["x"])) == ("day", 600, 144)
        by_id = {c["id"]: c for c in body["charts"]}
        assert list(by_id) == ["destinations", "hosts", "latency", "errors"]
        assert [s["label"] for s in by_id["destinations"]["series"]] == ["s2-late"]
        assert by_id["latency"]["unit"] == "min"
        assert max(v for v in by_id["latency"]["series"][0]["values"] if v is not None) == 90.0

        await page.goto("/charts?range=day")
        await expect(page.locator(".ranges a.on")).to_have_text("last day")
        area = page.locator(".chart-area")
        await expect(area).to_have_attribute("data-drawn", re.compile(r"^\d{4}-"))
        assert await page.evaluate("typeof window.uPlot") == "function"
        await expect(page.locator(".chart-area .missing")).to_be_hidden()

        figures = {
            key: page.locator(f'figure[data-chart="{key}"]')
            for key in ("destinations", "hosts", "latency", "errors")
        }
        for figure in figures.values():
            await expect(figure.locator("canvas")).not_to_have_count(0)
        await expect(figures["destinations"].locator(".unit")).to_have_text(
            re.compile(r"^\((B|KiB)/s\)$")
        )
        legend = figures["destinations"].locator(".u-legend")
        for name in ("s1-alpha", "s2-late", "time (UTC)"):
            await expect(legend).to_contain_text(name)
        await expect(figures["hosts"].locator(".u-legend")).to_contain_text("host-b")
        await expect(figures["latency"].locator(".unit")).to_have_text("(min)")
        for p in ("p50", "p95", "p99"):
            await expect(figures["latency"].locator(".u-legend")).to_contain_text(p)
        await expect(figures["errors"].locator(".u-legend")).to_contain_text("s4-failing")
        axes = figures["latency"].locator(".plot")
        await expect(axes).to_have_attribute(
            "aria-label", re.compile(r"^Delivery latency.*: time \d\d:\d\d to \d\d:\d\d UTC; 0 to")
        )
        await page.screenshot(path=str(tmp_path / "charts-day.png"), full_page=True)

        await page.goto("/charts?range=week")
        await expect(area).to_have_attribute("data-drawn", re.compile(r"^\d{4}-"))
        await expect(figures["destinations"].locator(".plot")).to_have_attribute(
            "aria-label", re.compile(r"time \d\d-\d\d \d\d:\d\d to \d\d-\d\d \d\d:\d\d UTC")
        )
        await page.goto("/destinations/s2-late?range=day")
        await expect(page.locator(".chart-area")).to_have_attribute("data-drawn", re.compile("."))
        only = page.locator('figure[data-chart="destinations"] .u-legend')
        await expect(only).to_contain_text("s2-late")
        await expect(only).not_to_contain_text("s1-alpha")
        assert said.errors == []
    finally:
        await page.context.close()


async def test_charts_without_the_library_say_so(
    browser: Browser, states: Monitor, tmp_path: Path
) -> None:
    """A monitor whose node modules lack uPlot says on the charts page that the library is not
    installed and how to install it, answers 404 for the vendor file, and still serves its
    other pages with no console error."""
    config = monitor_config(states.models, states.secrets_dir, node_modules=tmp_path)
    async with serve(config) as url:
        page, said = await signed_in(browser, url)
        try:
            assert (await page.request.get("/static/vendor/uplot/uPlot.min.css")).status == 404
            await page.goto("/charts")
            missing = page.locator(".chart-area .missing")
            await expect(missing).to_be_visible()
            await expect(missing).to_contain_text("bash infra/install.sh")
            await expect(page.locator(".chart-area canvas")).to_have_count(0)
            await page.goto("/timeliness")
            await expect(page.locator("table.grid")).to_be_visible()
            assert said.errors == []
        finally:
            await page.context.close()


async def test_charts_follow_live_changes(browser: Browser, states: Monitor) -> None:
    """With the charts page open, a delivery through a new host, once projected, appears in the
    throughput by host without a reload (the live stream's change makes the page fetch the
    charts again)."""
    page, said = await signed_in(browser, states.url)
    try:
        await page.goto("/charts?range=day")
        hosts = page.locator('figure[data-chart="hosts"] .u-legend')
        await expect(hosts).to_contain_text("host-a")
        await expect(hosts).not_to_contain_text("host-live")

        now = datetime.now(UTC)
        live = Fleet(now, [])
        live.cycle("s1-alpha", now - 2 * HOUR, host="host-live", stream="live")
        topic = states.models.transfers_topic
        async with Publisher(states.models.bootstrap, client_id="test-states-live") as publisher:
            await publisher.publish_many([(topic, key, e) for key, e in live.events])
        await states.models.catch_up(await ends_of(states.models.bootstrap, [topic]))

        await expect(hosts).to_contain_text("host-live", timeout=15_000)
        assert said.errors == []
    finally:
        await page.context.close()
