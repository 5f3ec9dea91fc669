"""The monitor in Debian's headless Chromium over the real pipeline (issues 7 and 13): a file
put through the ingest API cannot be delivered by its destination's only host (a ``file`` host
whose directory is blocked by a regular file of the same name): the host's problem, so after
the retry cycles the destination (not the file) goes on hold with the host's error as reason,
and the transfer stays queued. Signed in as an operator, the browser finds that destination
critical on the overview with the reason, opens it and the transfer's timeline; the cause is
removed, the operator restarts the destination, and the transfer page turns ``DONE`` live (no
reload) once the real scheduler, a real mover and the real projector have done their part; the
file is then at the destination and the overview shows the destination healthy again.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.monitor.conftest import PASSWORDS
from tests.monitor.pipeline import Pipeline, pipeline, stack

__all__ = ["pipeline", "stack"]

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
THROTTLE = "32k"  # bytes/s of the host: the delivery outlasts the page load after the click
LIVE_MS = 30_000  # bound on one expectation that needs the scheduler, a mover and the projector

if not shutil.which(CHROMIUM):  # installed from infra/apt-packages.txt
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from playwright.async_api import Browser, async_playwright, expect  # noqa: E402


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        await launched.close()


async def held(pipeline: Pipeline, dest: str) -> dict[str, Any]:
    """Wait until the read models show ``dest`` on hold; its row."""
    async with httpx.AsyncClient(base_url=pipeline.url, timeout=10) as client:
        for _ in range(300):
            answer = await client.get(f"/api/v1/destinations/{dest}", headers=pipeline.auth)
            if answer.status_code == 200:
                row = answer.json()
                if row["destination"]["status"] == "HOLD":
                    return dict(row)
            await asyncio.sleep(0.2)
    pytest.fail(f"{dest}: not on hold in the read models; {pipeline.stack.log('mover')}")


async def test_operator_restarts_a_held_destination_and_sees_its_transfer_done(
    browser: Browser, pipeline: Pipeline
) -> None:
    """A host that cannot take the file holds its destination, after the retry cycles, with the
    host's error as reason and the transfer still queued; the overview shows it critical with
    the reason, the transfer's timeline the error; once the cause is gone, the operator's
    restart is answered by the scheduler, delivered by a mover, and the transfer page shows it
    Done without a reload; the file is at the destination and the destination is OK again."""
    made = pipeline.stack
    tag = uuid.uuid4().hex[:6]
    dest = host = f"blocked-{tag}"
    outbox = made.root / f"outbox-{tag}"
    outbox.mkdir()
    blocker = outbox / "incoming"  # the host's directory, taken by a regular file
    blocker.write_text("not a directory\n")
    await made.apply(
        f"hosts:\n  - id: {host}\n    nickname: blocked folder\n    type: dissemination\n"
        f'    protocol: file\n    address: localhost{outbox}\n    directory: "incoming/"\n'
        "    retry_count: 0\n    retry_frequency: 1s\n"
        f'    options:\n      upload.rateThrottling: "{THROTTLE}"\n'
        f"destinations:\n  - name: {dest}\n    type: dissemination\n"
        f"    transfer_group: {made.group}\n    retry_count: 1\n    retry_frequency: 1s\n"
        f"associations:\n  - {{destination: {dest}, host: {host}, priority: 0}}\n"
    )
    data = b"GRIB" + os.urandom(128 * 1024) + b"7777"  # ~4 s at the throttle
    async with httpx.AsyncClient(timeout=30) as client:
        tid = await made.put(client, dest, "report.grib", data)
    row = await held(pipeline, dest)
    assert "File exists" in row["destination"]["status_reason"]
    assert [t["transfer_id"] for t in row["queue"]] == [tid]  # held, not stopped
    assert row["finished"] == []

    context = await browser.new_context(base_url=pipeline.url)
    page = await context.new_page()
    try:
        # sign in as an operator
        await page.goto("/")
        await expect(page.locator("h1")).to_have_text("Sign in")
        await page.fill("input[name=login]", "operator1")
        await page.fill("input[name=password]", PASSWORDS["operator"])
        await page.click("button[type=submit]")
        await expect(page.locator(f'tr[data-name="{dest}"]')).to_have_count(1)

        # the overview's "failing" filter lists it (and not the probe destination, which
        # delivered), critical, with the host's error as the reason
        await page.select_option("select[name=status]", "failing")
        await page.click("form.filter button[type=submit]")
        await expect(page).to_have_url(re.compile(r"[?&]status=failing"))
        row_el = page.locator(f'tr[data-name="{dest}"]')
        await expect(row_el).to_have_attribute("data-health", "critical")
        await expect(row_el).to_contain_text("File exists")
        await expect(page.locator(f'tr[data-name="probe-{made.tag}"]')).to_have_count(0)
        await page.screenshot(path=str(made.root / "held-overview.png"))

        # the destination with its reason, then the transfer's timeline with the error
        await row_el.locator("a").first.click()
        await expect(page.locator("h1")).to_contain_text(dest)
        await expect(page.locator("dl.facts")).to_contain_text("File exists")
        destination_url = page.url

        transfer = await context.new_page()
        await transfer.goto(f"/transfers/{tid}")
        await expect(transfer.locator("h1")).to_contain_text(f"Transfer {tid}")
        status = transfer.locator("#transfer-status")
        await expect(status).not_to_have_text("Stopped")
        timeline = transfer.locator("table.timeline")
        await expect(timeline).to_contain_text("TransferFailed")
        await expect(timeline).to_contain_text("File exists")
        await expect(timeline).not_to_contain_text("TransferStopped")
        await expect(transfer.locator("#live-state.on")).to_have_count(1)  # live stream open
        await transfer.evaluate("window.ecpdsSamePage = true")  # gone if the page reloads

        # a third tab keeps the overview open, to see the row recover live
        overview = await context.new_page()
        await overview.goto("/")
        listed = overview.locator(f'tr[data-name="{dest}"]')
        await expect(listed).to_have_attribute("data-health", "critical")
        await expect(overview.locator("#live-state.on")).to_have_count(1)
        await overview.evaluate("window.ecpdsSamePage = true")

        # the cause goes away; the operator restarts the destination; the transfer turns Done
        blocker.unlink()
        await page.goto(destination_url)
        # the live page re-renders in place as events arrive: a click event, not a pointer
        # click that waits for the button to hold still
        await page.locator("form.actions button[value=restart]").first.dispatch_event("click")
        await expect(page.locator(".flash")).to_contain_text("restart")
        assert await status.inner_text() != "Done", "delivered before the page could see it"
        await expect(status).to_have_text("Done", timeout=LIVE_MS)
        assert await transfer.evaluate("window.ecpdsSamePage === true"), "the page was reloaded"
        await expect(timeline).to_contain_text("TransferSucceeded")
        await transfer.screenshot(path=str(made.root / "transfer-done.png"))

        # delivered, whole, at its final name; the open overview shows the destination
        # healthy again, updated in place
        assert (outbox / "incoming" / "report.grib").read_bytes() == data
        await expect(listed).to_have_attribute("data-health", "ok", timeout=LIVE_MS)
        await expect(listed.locator("td").nth(2).locator(".badge.green")).to_have_text("OK")
        assert await overview.evaluate("window.ecpdsSamePage === true"), "overview reloaded"
    finally:
        await context.close()
