"""The monitor's pages against a read model filled by the real projector: sign-in, every page,
permissions (no page without sign-in, viewers cannot act, CSRF rejected)."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.templating import Jinja2Templates

from bus.events import envelope
from bus.events.notifications import MailFailed, NotificationFailed, NotificationRefused
from bus.events.portal import (
    AccessDeniedReason,
    PortalAccessDenied,
    PortalDownloaded,
    PortalUploaded,
)
from bus.events.transfers import DestinationStatus, DestinationStatusChanged
from projections.monitor.app import HERE
from projections.monitor.charts import RANGES, range_named
from projections.monitor.view import destination_badge
from tests.bus.samples import sample
from tests.monitor.conftest import Monitor, csrf_of, sign_in
from tests.projections.stream import Item
from tests.projections.support import publish

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

PAGES = (
    "/",
    "/destinations/dest-0",
    "/transfers",
    "/transfers/transfer-1",
    "/datafiles",
    "/datafiles/file-1",
    "/hosts",
    "/movers",
    "/acquisition",
    "/portal",
    "/charts",
    "/live",
)


async def test_no_page_without_sign_in(monitor: Monitor) -> None:
    """Every page redirects an anonymous caller to the sign-in page, and the API answers 401."""
    async with httpx.AsyncClient(base_url=monitor.url) as anonymous:
        for path in PAGES:
            answer = await anonymous.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next="), path
        for path in ("/api/v1/destinations", "/api/v1/transfers/transfer-1", "/metrics"):
            assert (await anonymous.get(path)).status_code == 401, path
        wrong = await anonymous.get("/api/v1/hosts", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await anonymous.get("/static/monitor.css")).status_code == 200


async def test_sign_in_refuses_a_wrong_password(monitor: Monitor) -> None:
    """A wrong password shows the form again with 401 and opens no session."""
    async with httpx.AsyncClient(base_url=monitor.url) as client:
        answer = await sign_in(client, "operator1", "not-the-password")
        assert answer.status_code == 401
        assert "Wrong login or password" in answer.text
        assert (await client.get("/")).status_code == 303


async def test_admin_signs_in_with_the_generated_password(monitor: Monitor) -> None:
    """The admin password written on first start (0600) signs in as an administrator."""
    path = monitor.secrets_dir / "admin.password"
    assert path.stat().st_mode & 0o777 == 0o600
    async with httpx.AsyncClient(base_url=monitor.url) as client:
        answer = await sign_in(client, "admin", path.read_text().strip())
        assert answer.status_code == 303
        page = await client.get("/")
        assert page.status_code == 200
        assert "admin (administrator)" in page.text


async def test_overview_shows_destinations_with_status_colours(
    operator: httpx.AsyncClient,
) -> None:
    """The overview lists every destination with its OpenECPDS badge and counts; search narrows."""
    page = await operator.get("/")
    assert page.status_code == 200
    names = re.findall(r'<tr data-name="([^"]+)"', page.text)
    assert names == [f"dest-{i}" for i in range(6)]
    api = (await operator.get("/api/v1/destinations")).json()["destinations"]
    for row in api:
        badge = destination_badge(row["status"])
        assert f'class="badge {badge.colour}" title="{badge.code}">{badge.name}<' in page.text
    assert sum(r["done"] for r in api) > 0
    narrowed = await operator.get("/", params={"q": "dest-3"})
    assert re.findall(r'<tr data-name="([^"]+)"', narrowed.text) == ["dest-3"]
    partial = await operator.get("/", params={"partial": "1"})
    assert "<html" not in partial.text
    assert 'data-name="dest-0"' in partial.text


async def test_destination_page_shows_hosts_history_and_chart(
    operator: httpx.AsyncClient,
) -> None:
    """A destination page shows its host, finished transfers and its chart area (the charts of
    that destination only, drawn in the browser with the vendored uPlot)."""
    page = await operator.get("/destinations/dest-2")
    assert page.status_code == 200
    assert "host-2" in page.text
    assert 'data-charts="/api/v1/charts?range=hour&amp;destination=dest-2"' in page.text
    assert '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer>' in page.text
    detail = (await operator.get("/api/v1/destinations/dest-2")).json()
    for t in detail["finished"][:5]:
        assert t["transfer_id"] in page.text
    assert (await operator.get("/destinations/nowhere")).status_code == 404


async def test_transfer_page_shows_the_complete_timeline(operator: httpx.AsyncClient) -> None:
    """A retried transfer's page shows every event in order, with hosts, movers and errors."""
    failed = (await operator.get("/api/v1/transfers", params={"q": ""})).json()["transfers"]
    retried = None
    for t in failed:
        detail = (await operator.get(f"/api/v1/transfers/{t['transfer_id']}")).json()
        if detail["transfer"]["requeue_count"] > 0:
            retried = detail
            break
    assert retried is not None, "the stream always has retried transfers"
    tid = retried["transfer"]["transfer_id"]
    page = await operator.get(f"/transfers/{tid}")
    assert page.status_code == 200
    kinds = [e["event_type"] for e in retried["timeline"]]
    assert kinds[0] == "TransferQueued"
    assert "TransferFailed" in kinds
    assert "TransferRequeued" in kinds
    positions = [page.text.index(f"<td>{k}</td>") for k in ("TransferQueued", "TransferFailed")]
    assert positions == sorted(positions)
    assert "connection refused" in page.text
    assert retried["transfer"]["host_id"] in page.text
    assert 'value="requeue"' in page.text  # an operator sees the action buttons


async def test_a_refused_notification_and_a_refused_mail_show_in_the_transfer_timeline(
    operator: httpx.AsyncClient, monitor: Monitor
) -> None:
    """NotificationFailed, NotificationRefused (a WIS2 rule broken) and MailFailed of a transfer
    are rows of its page's timeline, with the reason."""
    detail = (await operator.get("/api/v1/transfers/transfer-8")).json()
    destination = detail["transfer"]["destination"]
    note = sample(
        NotificationFailed,
        envelope=envelope("tests/monitor", "transfer-8"),
        destination=destination,
        transfer_id="transfer-8",
        message="topic refused by the broker",
    )
    mail = sample(
        MailFailed,
        envelope=envelope("tests/monitor", "transfer-8"),
        destination=destination,
        transfer_id="transfer-8",
        recipients=("nobody@refused.test",),
        error_class="DeliveryError",
        message="550 5.1.1 mailbox unavailable",
    )
    refused = sample(
        NotificationRefused,
        envelope=envelope("tests/monitor", "transfer-8"),
        destination=destination,
        transfer_id="transfer-8",
        reason="message of 9000 bytes is over the WIS2 limit of 8192",
    )
    models = monitor.models
    items = [Item("notifications", destination, event) for event in (note, mail, refused)]
    await models.catch_up(await publish(models.bootstrap, models.prefix, items))
    page = await operator.get("/transfers/transfer-8")
    assert "<td>NotificationFailed</td>" in page.text
    assert "topic refused by the broker" in page.text
    assert "<td>MailFailed</td>" in page.text
    assert "nobody@refused.test" in page.text
    assert "550 5.1.1 mailbox unavailable" in page.text
    assert "<td>NotificationRefused</td>" in page.text
    assert "over the WIS2 limit of 8192" in page.text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/datafiles", "file-1"),
        ("/datafiles/file-1", "transfer-1"),
        ("/hosts", "host-0"),
        ("/movers", "mover-"),
        ("/acquisition", "Acquisition console"),
        ("/charts", "Throughput by destination"),
        ("/transfers?status=DONE", "Done"),
    ],
)
async def test_list_pages_render(operator: httpx.AsyncClient, path: str, expected: str) -> None:
    """Data files, hosts, movers, acquisition, charts and transfer lists render their rows."""
    page = await operator.get(path)
    assert page.status_code == 200
    assert expected in page.text


async def test_viewer_cannot_act(viewer: httpx.AsyncClient) -> None:
    """A viewer sees no action buttons, and a well-formed action from them is refused (403)."""
    page = await viewer.get("/transfers/transfer-1")
    assert page.status_code == 200
    assert 'value="requeue"' not in page.text
    form = {"verb": "requeue", "csrf": csrf_of(page.text)}
    assert (await viewer.post("/transfers/transfer-1/action", data=form)).status_code == 403
    api = await viewer.post(
        "/api/v1/transfers/transfer-1/requeue", headers={"X-CSRF-Token": form["csrf"]}
    )
    assert api.status_code == 403


async def test_posts_without_the_csrf_token_are_rejected(operator: httpx.AsyncClient) -> None:
    """An action without the session's CSRF token, or with another, is refused (403)."""
    no_token = await operator.post("/transfers/transfer-1/action", data={"verb": "requeue"})
    assert no_token.status_code == 403
    wrong = await operator.post(
        "/transfers/transfer-1/action", data={"verb": "requeue", "csrf": "forged"}
    )
    assert wrong.status_code == 403
    api = await operator.post("/api/v1/transfers/transfer-1/requeue")
    assert api.status_code == 403
    async with httpx.AsyncClient(base_url=str(operator.base_url)) as other:
        login = await other.post("/login", data={"login": "operator1", "password": "x"})
        assert login.status_code == 403  # the sign-in form is protected too


async def test_the_portal_page_shows_traffic_per_user_and_destination(
    operator: httpx.AsyncClient, monitor: Monitor
) -> None:
    """Uploads, downloads (complete or not) and denials of a data user are counted per
    destination, and each is a row of the latest events with its reason."""
    env = envelope("tests/monitor", "portal-page")
    events = [
        PortalUploaded(
            envelope=env, user="site-x", destination="dest-p", path="a.grib",
            protocol="sftp", size=2048, duration_ms=5,
        ),
        PortalDownloaded(
            envelope=envelope("tests/monitor", "portal-page"), user="site-x",
            destination="dest-p", path="b.grib", protocol="https", bytes_sent=4096,
            duration_ms=7, complete=False,
        ),
        PortalAccessDenied(
            envelope=envelope("tests/monitor", "portal-page"), user="site-x", protocol="sftp",
            reason=AccessDeniedReason.NO_PERMISSION, message="delete is not permitted",
            operation="delete", path="/dest-p/b.grib",
        ),
    ]  # fmt: skip
    models = monitor.models
    items = [Item("portal", "site-x", event) for event in events]
    await models.catch_up(await publish(models.bootstrap, models.prefix, items))
    page = await operator.get("/portal")
    assert page.status_code == 200
    row = re.search(r"<tr><td>site-x</td><td>dest-p</td>(.*?)</tr>", page.text)
    assert row is not None, page.text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1])
    assert cells[0] == "1"  # one upload
    assert cells[2] == "1 (0)"  # one download, not complete
    assert "NO_PERMISSION: delete is not permitted" in page.text


async def test_an_operators_hold_is_never_shown_as_a_failure(
    operator: httpx.AsyncClient, monitor: Monitor
) -> None:
    """A destination an operator held shows a neutral "On hold" badge with its reason, is
    listed by the "on hold" filter and not by "failing"; one the scheduler held after every
    host failed shows red "Failed" and is failing. The search syntax finds them by name."""
    events = [
        DestinationStatusChanged(
            envelope=envelope("tests/monitor", "held-by-op"), destination="held-by-op",
            new_status=DestinationStatus.HOLD, reason="maintenance window", actor="operator1",
        ),
        DestinationStatusChanged(
            envelope=envelope("tests/monitor", "held-failed"), destination="held-failed",
            new_status=DestinationStatus.HOLD, reason="every host failed 3 times",
        ),
    ]  # fmt: skip
    models = monitor.models
    items = [Item("transfers", e.destination, e) for e in events]
    await models.catch_up(await publish(models.bootstrap, models.prefix, items))

    page = (await operator.get("/", params={"q": "name=held-*"})).text
    held = re.search(r'<tr data-name="held-by-op" data-health="(\w+)">(.*?)</tr>', page, re.S)
    failed = re.search(r'<tr data-name="held-failed" data-health="(\w+)">(.*?)</tr>', page, re.S)
    assert held is not None, page
    assert failed is not None, page
    assert held[1] == "held"
    assert '<span class="badge neutral" title="HOLD">On hold</span>' in held[2]
    assert "maintenance window" in held[2]
    assert "red" not in held[2]
    assert failed[1] == "critical"
    assert '<span class="badge red" title="HOLD">Failed</span>' in failed[2]

    failing = (await operator.get("/", params={"status": "failing", "q": "held-"})).text
    assert 'data-name="held-failed"' in failing
    assert 'data-name="held-by-op"' not in failing
    on_hold = (await operator.get("/", params={"status": "held"})).text
    assert 'data-name="held-by-op"' in on_hold
    assert 'data-name="held-failed"' not in on_hold


async def test_a_search_the_syntax_cannot_read_is_answered_not_failed(
    operator: httpx.AsyncClient,
) -> None:
    """An unknown field shows the sentence on the page and a 400 naming it on the API."""
    page = await operator.get("/", params={"q": "colour=red"})
    assert page.status_code == 200
    assert "unknown field &#39;colour&#39;" in page.text
    transfers = await operator.get("/transfers", params={"q": "size>=lots"})
    assert "is not a size" in transfers.text
    api = await operator.get("/api/v1/transfers", params={"q": "colour=red"})
    assert api.status_code == 400
    assert "unknown field 'colour'" in api.text


async def test_the_errors_table_says_what_it_counts(operator: httpx.AsyncClient) -> None:
    """The charts page's errors by destination name the span they count (since the read
    models began) above the table, and say so in a sentence when no attempt failed."""
    page = await operator.get("/charts")
    assert page.status_code == 200
    assert "Failed attempts and files delivered since the read models began" in page.text
    assert "No failed attempt recorded" not in page.text
    empty = Jinja2Templates(directory=str(HERE / "templates")).env.get_template("charts.html")
    shown = empty.render(
        partial=True, errors=[], chart_library=None, range=range_named(None), ranges=RANGES
    )
    assert "No failed attempt recorded since the read models began." in shown
    assert "<table>" not in shown.split("Errors by destination", 1)[1]
