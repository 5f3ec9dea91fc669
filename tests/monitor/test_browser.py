"""The monitor in Debian's headless Chromium (driven by Playwright, no browser download):
sign in, go from the overview to a destination and a transfer's timeline, requeue it, and see
the request appear in the timeline without a reload once it is projected."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from tests.monitor.conftest import PASSWORDS, Monitor
from tests.monitor.test_api import requests_on

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]

if not shutil.which(CHROMIUM):  # installed from infra/apt-packages.txt
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        await launched.close()


async def test_operator_follows_a_transfer_and_requeues_it(
    browser: Browser, monitor: Monitor
) -> None:
    """Signed in as an operator, the browser opens a destination, then a transfer's timeline,
    requeues it, and sees RequeueRequested appear live once projected."""
    context = await browser.new_context(base_url=monitor.url)
    page: Page = await context.new_page()
    try:
        await page.goto("/transfers/transfer-9")
        await expect(page.locator("h1")).to_have_text("Sign in")
        await page.fill("input[name=login]", "operator1")
        await page.fill("input[name=password]", PASSWORDS["operator"])
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_contain_text("Transfer transfer-9")

        await page.goto("/")
        await expect(page.locator("tr[data-name]")).to_have_count(6)
        await page.screenshot(path=str(monitor.secrets_dir.parent / "overview.png"))
        await page.click("text=dest-0")
        await expect(page.locator("h1")).to_contain_text("dest-0")
        await page.locator("table a[href^='/transfers/']").first.click()
        await expect(page.locator("table.timeline")).to_contain_text("TransferQueued")
        await expect(page.locator("#live-state.on")).to_have_count(1)  # live stream open

        tid = (await page.locator("h1").inner_text()).split()[1]
        await page.click("button[value=requeue]")
        await expect(page.locator(".flash")).to_contain_text("requeue")
        await expect(page.locator("#live-state.on")).to_have_count(1)
        _, ends = await requests_on(monitor.models)
        await monitor.models.catch_up(ends)
        timeline = page.locator("table.timeline")
        await expect(timeline).to_contain_text("RequeueRequested", timeout=15_000)
        assert tid.startswith("transfer-")
        await page.screenshot(path=str(monitor.secrets_dir.parent / "transfer.png"))
    finally:
        await context.close()


async def test_failing_filter_lists_exactly_the_rows_whose_health_is_not_ok(
    browser: Browser, monitor: Monitor
) -> None:
    """The overview's "failing" status filter (SQL) keeps exactly the destinations whose Health
    badge (Python, the same OpenECPDS monitoring rule) is not OK."""
    context = await browser.new_context(base_url=monitor.url)
    page: Page = await context.new_page()
    try:
        await page.goto("/")
        await page.fill("input[name=login]", "viewer1")
        await page.fill("input[name=password]", PASSWORDS["viewer"])
        await page.click("button[type=submit]")
        rows = page.locator("tr[data-name]")
        await expect(rows).to_have_count(6)
        health = {
            await r.get_attribute("data-name"): await r.get_attribute("data-health")
            for r in await rows.all()
        }
        assert set(health.values()) <= {"ok", "warning", "critical"}
        await page.goto("/?status=failing")
        await expect(page.locator("select[name=status]")).to_have_value("failing")
        failing = {await r.get_attribute("data-name") for r in await rows.all()}
        assert failing == {name for name, level in health.items() if level != "ok"}
    finally:
        await context.close()
