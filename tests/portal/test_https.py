"""The portal's HTTPS door against ``curl``: Basic and token sign-in, HTML and JSON listings,
``Range``/``ETag``/``If-None-Match``/``Last-Modified``, ``PUT`` uploads and refusals, with real
Kafka, PostgreSQL, projector and object store."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from bus.events.portal import (
    AccessDeniedReason,
    PortalAccessDenied,
    PortalDownloaded,
    PortalUploaded,
)
from bus.events.transfers import TransferDownloaded, TransferQueued
from bus.tokens import TokenFile, TokenRole
from tests.portal.conftest import PortalStack, Site

pytestmark = pytest.mark.kafka


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def answer(done: subprocess.CompletedProcess[bytes]) -> Answer:
    """curl's ``-D - -w '\\nHTTP <code>'`` output, parsed (a ``100 Continue`` skipped)."""
    assert done.returncode == 0, done.stderr
    out, _, code = done.stdout.rpartition(b"\nHTTP ")
    while True:
        head, _, out = out.partition(b"\r\n\r\n")
        if head.split(b" ", 2)[1:2] != [b"100"]:
            break
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(code), headers, out)


USERS = """
users:
  - login: web-{tag}
    password: web-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, put, size, mtime]
  - login: look-{tag}
    password: look-secret
    destinations: [pickup-{tag}]
    operations: [dir, size]
"""


@pytest.fixture(scope="module")
async def users(portal: PortalStack) -> dict[str, Site]:
    """web (dir get put size mtime) and look (dir size only)."""
    await portal.apply(USERS.format(tag=portal.tag))
    return {
        "web": Site(f"web-{portal.tag}", "web-secret", Path("/nonexistent")),
        "look": Site(f"look-{portal.tag}", "look-secret", Path("/nonexistent")),
    }


@pytest.fixture(scope="module")
async def uploaded(
    portal: PortalStack, users: dict[str, Site], tmp_path_factory: pytest.TempPathFactory
) -> bytes:
    """``web.bin`` PUT into pickup-<tag> by web, and projected."""
    data = os.urandom(1_000_000)
    source = tmp_path_factory.mktemp("https") / "web.bin"
    source.write_bytes(data)
    put = answer(
        await asyncio.to_thread(
            portal.curl, f"/pickup-{portal.tag}/web.bin", "-T", str(source), login=users["web"]
        )
    )
    assert put.status == 201, put.body + portal.log("portal").encode()
    assert orjson.loads(put.body)["size"] == len(data)
    await portal.listed(f"pickup-{portal.tag}", "web.bin")
    return data


async def test_listings_are_json_for_scripts_and_html_for_people(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes
) -> None:
    """A folder answers a JSON listing (name, type, size, status) with ``Accept:
    application/json`` and an HTML index with a link per file otherwise; ``/`` lists the
    destinations."""
    dest = f"pickup-{portal.tag}"
    listed = answer(portal.curl(f"/{dest}/", "-H", "Accept: application/json", login=users["web"]))
    assert listed.status == 200
    entries = {e["name"]: e for e in orjson.loads(listed.body)["entries"]}
    assert entries["web.bin"]["size"] == len(uploaded)
    assert entries["web.bin"]["status"] == "HOLD"
    page = answer(portal.curl(f"/{dest}/?sort=size&order=desc", login=users["web"]))
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'href="/{dest}/web.bin"'.encode() in page.body
    root = answer(portal.curl("/?format=json", login=users["web"]))
    assert [e["name"] for e in orjson.loads(root.body)["entries"]] == [dest]


async def test_ranges_etags_and_a_complete_get_that_marks_the_transfer_done(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes
) -> None:
    """``Range`` answers 206 with its bytes, an unsatisfiable one 416; ``If-None-Match`` with
    the ETag 304; neither marks anything; the whole GET (ETag, Last-Modified, Content-Length)
    returns the bytes and marks the held transfer DONE."""
    dest, web = f"pickup-{portal.tag}", users["web"]
    part = answer(portal.curl(f"/{dest}/web.bin", "-r", "10-19", login=web))
    assert part.status == 206
    assert part.body == uploaded[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(uploaded)}"
    tail = answer(portal.curl(f"/{dest}/web.bin", "-r", "-5", login=web))
    assert tail.body == uploaded[-5:]
    beyond = answer(portal.curl(f"/{dest}/web.bin", "-r", f"{len(uploaded)}-", login=web))
    assert beyond.status == 416
    whole = answer(portal.curl(f"/{dest}/web.bin", login=web))
    assert whole.status == 200
    assert whole.body == uploaded
    assert whole.headers["content-length"] == str(len(uploaded))
    assert whole.headers["accept-ranges"] == "bytes"
    assert "last-modified" in whole.headers
    tag = whole.headers["etag"]
    head = answer(portal.curl(f"/{dest}/web.bin", "-I", login=web))
    assert head.status == 200
    assert head.headers["etag"] == tag
    assert head.headers["content-length"] == str(len(uploaded))
    same = answer(portal.curl(f"/{dest}/web.bin", "-H", f"If-None-Match: {tag}", login=web))
    assert same.status == 304
    assert same.body == b""
    transfer = next(e.transfer_id for e in portal.events(TransferQueued) if e.target == "web.bin")
    await portal.until(
        lambda: any(e.transfer_id == transfer for e in portal.events(TransferDownloaded))
    )
    downloads = [e for e in portal.events(PortalDownloaded) if e.transfer_id == transfer]
    assert [d.complete for d in downloads].count(True) == 1
    assert len([e for e in portal.events(TransferDownloaded) if e.transfer_id == transfer]) == 1


async def test_a_portal_token_signs_in_and_a_viewer_token_only_reads(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes, tmp_path: Path
) -> None:
    """``Authorization: Bearer`` with a token of the portal's token file named by the login
    lists; a viewer token may not PUT (403); an unknown token is 401."""
    book = TokenFile(portal.root / "secrets" / "portal-tokens")
    writer = book.create(users["web"].login, TokenRole.OPERATOR)
    dest = f"pickup-{portal.tag}"
    listed = answer(portal.curl(f"/{dest}/?format=json", "-H", f"Authorization: Bearer {writer}"))
    assert listed.status == 200
    assert "web.bin" in {e["name"] for e in orjson.loads(listed.body)["entries"]}
    book.revoke(users["web"].login)
    viewer = book.create(users["web"].login, TokenRole.VIEWER)
    (tmp_path / "v.bin").write_bytes(b"v")
    put = answer(
        portal.curl(
            f"/{dest}/v.bin", "-T", str(tmp_path / "v.bin"), "-H", f"Authorization: Bearer {viewer}"
        )
    )
    assert put.status == 403
    unknown = answer(portal.curl(f"/{dest}/", "-H", "Authorization: Bearer nope"))
    assert unknown.status == 401


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/pickup-{tag}/../../etc/passwd", 404),
        ("/pickup-{tag}/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/pickup-{tag}/%252e%252e/etc/passwd", 404),
        ("/etc/passwd", 404),
        ("/other-{tag}/", 404),
        ("/pickup-{tag}/a%00b", 404),
    ],
)
async def test_paths_outside_the_view_are_not_found(
    portal: PortalStack, users: dict[str, Site], path: str, status: int
) -> None:
    """Traversal of every kind (plain, encoded, double-encoded, NUL) and destinations not
    reached answer 404, never a file."""
    done = answer(portal.curl(path.format(tag=portal.tag), login=users["web"]))
    assert done.status == status
    assert b"root:" not in done.body


async def test_refusals_answer_their_status_and_are_events(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes
) -> None:
    """No credentials 401 with a Basic challenge; a wrong password 401; an operation not
    granted 403 and a NO_PERMISSION denial."""
    dest = f"pickup-{portal.tag}"
    anonymous = answer(portal.curl(f"/{dest}/"))
    assert anonymous.status == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    wrong = answer(portal.curl(f"/{dest}/", login=users["web"], password="nope"))
    assert wrong.status == 401
    look = users["look"]
    refused = answer(portal.curl(f"/{dest}/web.bin", login=look))
    assert refused.status == 403
    await portal.until(
        lambda: any(
            e.user == look.login
            and e.reason is AccessDeniedReason.NO_PERMISSION
            and e.operation == "get"
            and e.protocol == "https"
            for e in portal.events(PortalAccessDenied)
        )
    )


async def test_rclone_webdav_lists_copies_both_ways_and_checks(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes, tmp_path: Path
) -> None:
    """rclone's webdav remote: ``lsl`` lists what waits (PROPFIND), ``copy`` pulls it (GET)
    and pushes a new file (PUT), ``check`` finds both sides the same."""
    dest, web = f"pickup-{portal.tag}", users["web"]
    listed = await asyncio.to_thread(portal.rclone, web, "webdav", "lsl", f"p:{dest}")
    assert listed.returncode == 0, listed.stderr + portal.log("portal")
    assert "web.bin" in listed.stdout
    assert str(len(uploaded)) in listed.stdout
    down = tmp_path / "down"
    pulled = await asyncio.to_thread(
        portal.rclone, web, "webdav", "copy", f"p:{dest}/web.bin", str(down)
    )
    assert pulled.returncode == 0, pulled.stderr
    assert (down / "web.bin").read_bytes() == uploaded
    up = tmp_path / "up"
    up.mkdir()
    (up / "rclone.bin").write_bytes(os.urandom(300_000))
    pushed = await asyncio.to_thread(portal.rclone, web, "webdav", "copy", str(up), f"p:{dest}")
    assert pushed.returncode == 0, pushed.stderr + portal.log("portal")
    await portal.listed(dest, "rclone.bin")
    checked = await asyncio.to_thread(
        portal.rclone, web, "webdav", "check", str(up), f"p:{dest}", "--one-way", "--size-only"
    )
    assert checked.returncode == 0, checked.stderr


async def test_webdav_verbs_answer_as_rfc_4918_says(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes, tmp_path: Path
) -> None:
    """PROPFIND Depth 0 answers 207 for the folder alone; MKCOL without the grant is 403; a
    PUT to a temporary name then MOVE to a final name registers it; DELETE of a registered
    file is 405."""
    dest, web = f"pickup-{portal.tag}", users["web"]
    found = answer(portal.curl(f"/{dest}/", "-X", "PROPFIND", "-H", "Depth: 0", login=web))
    assert found.status == 207
    assert b"<D:collection" in found.body
    assert b"web.bin" not in found.body
    made = answer(portal.curl(f"/{dest}/sub/", "-X", "MKCOL", login=web))
    assert made.status == 403
    (tmp_path / "t.bin").write_bytes(b"t" * 1000)
    staged = answer(portal.curl(f"/{dest}/moved.bin.tmp", "-T", str(tmp_path / "t.bin"), login=web))
    assert staged.status == 201
    mover = Site(web.login, web.password, web.key)
    await portal.apply(
        f"""
users:
  - login: {web.login}
    password: {web.password}
    destinations: [{dest}]
    operations: [dir, get, put, size, mtime, rename, delete]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    moved = answer(
        portal.curl(
            f"/{dest}/moved.bin.tmp",
            "-X", "MOVE", "-H", f"Destination: https://127.0.0.1:{portal.https_port}/{dest}/moved.bin",
            login=mover,
        )
    )  # fmt: skip
    assert moved.status == 201, moved.body
    await portal.listed(dest, "moved.bin")
    gone = answer(portal.curl(f"/{dest}/web.bin", "-X", "DELETE", login=mover))
    assert gone.status == 405


async def test_cadaver_lists_gets_puts_makes_a_folder_and_moves_an_upload_into_place(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes, tmp_path: Path
) -> None:
    """cadaver (WebDAV, ``.netrc`` sign-in): ``ls`` lists what waits (PROPFIND), ``get``
    returns its bytes, ``put`` registers a file (an upload event), ``mkcol`` makes a folder,
    a ``put`` under a temporary name then ``move`` to a final name registers it; look (no
    ``get``, ``put`` or ``mkdir``) is refused each (403), as denied-access events."""
    dest = f"pickup-{portal.tag}"
    dav = Site(f"dav-{portal.tag}", "dav-secret", Path("/nonexistent"))
    await portal.apply(
        f"""
users:
  - login: {dav.login}
    password: {dav.password}
    destinations: [{dest}]
    operations: [dir, get, put, size, mtime, rename, mkdir]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    data = os.urandom(400_003)
    (tmp_path / "dav.bin").write_bytes(data)
    said = await asyncio.to_thread(
        portal.cadaver,
        dav,
        f"/{dest}/",
        [
            "ls",
            "get web.bin back.bin",
            "put dav.bin by-cadaver.bin",
            "mkcol sub",
            "put dav.bin .moving.tmp",
            "move .moving.tmp moved-by-cadaver.bin",
            "ls sub",
        ],
        cwd=tmp_path,
    )
    assert "failed" not in said, said + portal.log("portal")
    assert f"web.bin {len(uploaded)}" in " ".join(said.split())
    assert (tmp_path / "back.bin").read_bytes() == uploaded
    assert "Creating `sub': succeeded." in said
    assert "Moving `" in said
    for target in ("by-cadaver.bin", "moved-by-cadaver.bin"):
        await portal.listed(dest, target)
    ups = {e.path: e for e in portal.events(PortalUploaded) if e.user == dav.login}
    assert ups["by-cadaver.bin"].size == len(data)
    assert ups["by-cadaver.bin"].protocol == "https"
    assert ups["moved-by-cadaver.bin"].size == len(data)

    look = users["look"]
    refused = await asyncio.to_thread(
        portal.cadaver,
        look,
        f"/{dest}/",
        ["get web.bin mine.bin", "put dav.bin by-look.bin", "mkcol not-mine"],
        cwd=tmp_path,
    )
    assert refused.count("403 Forbidden") == 3, refused
    assert (tmp_path / "mine.bin").read_bytes() == b""  # cadaver makes it before it asks

    def denied() -> set[str | None]:
        return {
            e.operation
            for e in portal.events(PortalAccessDenied)
            if e.user == look.login and e.reason is AccessDeniedReason.NO_PERMISSION
        }

    await portal.until(lambda: {"get", "put", "mkdir"} <= denied())


async def test_listings_page_with_folders_first_and_sort_by_size(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes, tmp_path: Path
) -> None:
    """Targets with a ``/`` make folders, listed before files; ``limit``/``offset`` page the
    folder (``total`` counts all of it) and ``sort=size&order=desc`` orders its files."""
    dest, web = f"pickup-{portal.tag}", users["web"]
    for name, size in (("small.bin", 10), ("large.bin", 5000)):
        (tmp_path / name).write_bytes(os.urandom(size))
        put = answer(portal.curl(f"/{dest}/deep/{name}", "-T", str(tmp_path / name), login=web))
        assert put.status == 201, put.body
    await portal.listed(dest, "deep/small.bin")
    await portal.listed(dest, "deep/large.bin")

    def listing(path: str) -> dict[str, object]:
        found = answer(portal.curl(path, login=web))
        assert found.status == 200, found.body
        return dict(orjson.loads(found.body))

    first = listing(f"/{dest}/?format=json&limit=1")
    assert first["entries"] == [{"name": "deep", "type": "folder"}]
    total = first["total"]
    assert isinstance(total, int)
    assert total >= 2
    second = listing(f"/{dest}/?format=json&limit=1&offset=1")
    entries = second["entries"]
    assert isinstance(entries, list)
    assert entries[0]["type"] == "file"
    deep = listing(f"/{dest}/deep/?format=json&sort=size&order=desc")
    assert [e["name"] for e in deep["entries"]] == ["large.bin", "small.bin"]  # type: ignore[attr-defined]


async def test_rclone_http_reads_the_html_index_and_copies_a_file(
    portal: PortalStack, users: dict[str, Site], uploaded: bytes, tmp_path: Path
) -> None:
    """rclone's http remote (read-only, Basic in a header) lists a destination from its HTML
    index and copies a file from it."""
    dest, web = f"pickup-{portal.tag}", users["web"]
    basic = base64.b64encode(f"{web.login}:{web.password}".encode()).decode()
    cert = portal.root / "secrets" / "portal" / "tls" / "server.crt"
    common = [
        "rclone", "--config", "/dev/null", "--ca-cert", str(cert), "--retries", "1",
        "--header", f"Authorization: Basic {basic}",
        "--http-url", f"https://127.0.0.1:{portal.https_port}/{dest}/",
    ]  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*common, *args], capture_output=True, text=True, timeout=120)

    listed = await asyncio.to_thread(run, "lsl", ":http:")
    assert listed.returncode == 0, listed.stderr + portal.log("portal")
    assert "web.bin" in listed.stdout
    assert str(len(uploaded)) in listed.stdout
    copied = await asyncio.to_thread(run, "copy", ":http:web.bin", str(tmp_path))
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "web.bin").read_bytes() == uploaded


async def test_a_put_past_the_users_max_file_size_is_413(
    portal: PortalStack, tmp_path: Path
) -> None:
    """A data user's ``max_file_size`` caps a PUT: 413, nothing registered under that name."""
    dest = f"pickup-{portal.tag}"
    tight = Site(f"tight-{portal.tag}", "tight-secret", Path("/nonexistent"))
    await portal.apply(
        f"""
users:
  - login: {tight.login}
    password: {tight.password}
    destinations: [{dest}]
    operations: [dir, put]
    properties:
      max_file_size: "1000"
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    (tmp_path / "t.bin").write_bytes(os.urandom(500_000))
    put = answer(portal.curl(f"/{dest}/tight.bin", "-T", str(tmp_path / "t.bin"), login=tight))
    assert put.status == 413, put.body
    assert b"max file size" in put.body
    assert not any(e.target == "tight.bin" for e in portal.events(TransferQueued))
