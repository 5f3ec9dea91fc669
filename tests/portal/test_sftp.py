"""The portal's SFTP and SCP door against Debian's stock OpenSSH clients (``sftp -b``,
``scp -O``) and ``curl``'s sftp, with real Kafka, PostgreSQL, projector and object store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import asyncssh
import pytest

from bus.events.datafiles import DataFileRegistered, DataFileRegistrationFailed, DataFileStored
from bus.events.portal import (
    AccessDeniedReason,
    PortalAccessDenied,
    PortalDownloaded,
    PortalSessionsReported,
    PortalUploaded,
)
from bus.events.transfers import TransferDownloaded, TransferQueued
from projections.monitor.queries import Queries, Row
from projections.portal import pool
from tests.portal.conftest import SSH_OPTIONS, WAIT, PortalStack, Site

pytestmark = pytest.mark.kafka

USERS = """
users:
  - login: alice-{tag}
    password: alice-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, put, size, mtime, rename, delete, mkdir, rmdir]
    ssh_authorized_keys: ["{alice_key}"]
  - login: reader-{tag}
    password: reader-secret
    operations: [dir, size, mtime]
    ssh_authorized_keys: ["{reader_key}"]
  - login: picky-{tag}
    password: picky-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, put, size]
    properties:
      portal.putPathPermRegex: "pickup-{tag}/incoming/.*\\\\.grib"
    ssh_authorized_keys: ["{picky_key}"]
policies:
  - id: readers-{tag}
    destinations: [pickup-{tag}]
    users: [reader-{tag}]
"""


@pytest.fixture(scope="module")
async def sites(portal: PortalStack) -> dict[str, Site]:
    """Three data users: alice (every operation), reader (no get, through a policy) and
    picky (put only under incoming/ as .grib)."""
    made = {
        "alice": portal.site(f"alice-{portal.tag}", "alice-secret"),
        "reader": portal.site(f"reader-{portal.tag}", "reader-secret"),
        "picky": portal.site(f"picky-{portal.tag}", "picky-secret"),
    }
    await portal.apply(
        USERS.format(
            tag=portal.tag,
            alice_key=made["alice"].public,
            reader_key=made["reader"].public,
            picky_key=made["picky"].public,
        )
    )
    return made


def _denials(portal: PortalStack, login: str) -> list[PortalAccessDenied]:
    return [e for e in portal.events(PortalAccessDenied) if e.user == login]


async def test_a_put_file_is_registered_listed_and_its_complete_download_marks_it_done(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``put`` with a key registers the file through ingest (held for pickup); once projected
    ``ls -l`` lists it with its size; a complete ``get`` (password sign-in) returns the same
    bytes, is a complete ``PortalDownloaded`` and marks the transfer DONE."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "data.bin").write_bytes(data)
    put = portal.sftp(alice, [f"put data.bin /{dest}/data.bin"], cwd=tmp_path)
    assert put.returncode == 0, put.stderr + portal.log("portal")
    await portal.until(
        lambda: any(
            e.destination == dest and e.target == "data.bin" for e in portal.events(TransferQueued)
        )
    )
    queued = [e for e in portal.events(TransferQueued) if e.destination == dest]
    assert queued[0].status.value == "HOLD"
    uploaded = [e for e in portal.events(PortalUploaded) if e.user == alice.login]
    assert uploaded
    assert uploaded[0].size == len(data)
    await portal.listed(dest, "data.bin")

    listing = portal.sftp(alice, [f"ls -l /{dest}"], cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "data.bin" in listing.stdout
    assert str(len(data)) in listing.stdout

    got = portal.sftp(
        alice, [f"get /{dest}/data.bin copy.bin"], password=alice.password, cwd=tmp_path
    )
    assert got.returncode == 0, got.stderr + portal.log("portal")
    assert (tmp_path / "copy.bin").read_bytes() == data
    transfer = queued[0].transfer_id
    await portal.until(
        lambda: any(e.transfer_id == transfer for e in portal.events(TransferDownloaded))
    )
    downloads = [e for e in portal.events(PortalDownloaded) if e.transfer_id == transfer]
    assert downloads[-1].complete
    assert downloads[-1].bytes_sent == len(data)
    rows = []
    for _ in range(100):
        rows = await portal.rows("SELECT status FROM transfers WHERE transfer_id = %s", transfer)
        if rows and rows[0][0] == "DONE":
            break
        await asyncio.sleep(0.2)
    assert rows == [("DONE",)]


async def test_an_operation_not_granted_is_refused_with_its_event(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """A user who reaches the destination through a policy without ``get`` may list it but a
    ``get`` (or a ``put``) fails: PERMISSION_DENIED, and a NO_PERMISSION denial naming the
    operation and the path."""
    reader, dest = sites["reader"], f"pickup-{portal.tag}"
    (tmp_path / "x.bin").write_bytes(b"x")
    listing = portal.sftp(reader, [f"ls /{dest}"], cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    got = portal.sftp(reader, [f"get /{dest}/data.bin mine.bin"], cwd=tmp_path)
    assert got.returncode != 0
    assert not (tmp_path / "mine.bin").exists()
    put = portal.sftp(reader, [f"put x.bin /{dest}/x.bin"], cwd=tmp_path)
    assert put.returncode != 0
    assert "denied" in put.stderr.lower()

    def refused() -> list[tuple[str | None, str | None]]:
        return [
            (e.operation, e.path)
            for e in _denials(portal, reader.login)
            if e.reason is AccessDeniedReason.NO_PERMISSION
        ]

    await portal.until(lambda: ("put", f"/{dest}/x.bin") in refused())
    assert ("get", f"/{dest}/data.bin") in refused()


async def test_a_put_path_regex_allows_only_the_paths_it_matches(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``portal.putPathPermRegex`` = ``<dest>/incoming/.*\\.grib``: a .grib under incoming/ is
    registered; the same file elsewhere, or another name under incoming/, is refused."""
    picky, dest = sites["picky"], f"pickup-{portal.tag}"
    (tmp_path / "a.grib").write_bytes(b"GRIB" * 100)
    ok = portal.sftp(picky, [f"put a.grib /{dest}/incoming/a.grib"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr + portal.log("portal")
    for target in (f"/{dest}/a.grib", f"/{dest}/incoming/a.bin"):
        refused = portal.sftp(picky, [f"put a.grib {target}"], cwd=tmp_path)
        assert refused.returncode != 0, target
    await portal.until(
        lambda: (
            {e.path for e in _denials(portal, picky.login)}
            >= {f"/{dest}/a.grib", f"/{dest}/incoming/a.bin"}
        )
    )
    registered = {e.target for e in portal.events(DataFileRegistered) if e.destination == dest}
    assert "incoming/a.grib" in registered
    assert not registered & {"a.grib", "incoming/a.bin"}


@pytest.mark.parametrize(
    "command",
    [
        "get ../../../../etc/passwd stolen",
        "get /etc/passwd stolen",
        "get /pickup-{tag}/../other-{tag}/x stolen",
        "get /pickup-{tag}/%2e%2e/%2e%2e/etc/passwd stolen",
        "get /pickup-{tag}/%252e%252e/etc/passwd stolen",
        "ls /other-{tag}",
        "cd ../..",
    ],
)
async def test_traversal_attempts_reach_nothing_outside_the_view(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path, command: str
) -> None:
    """``..`` (plain, percent-encoded, double-encoded), absolute paths and a destination the
    user does not reach all fail with nothing fetched, each a NOT_FOUND denial."""
    alice = sites["alice"]
    before = len(_denials(portal, alice.login))
    done = portal.sftp(alice, [command.format(tag=portal.tag)], cwd=tmp_path)
    assert done.returncode != 0, done.stdout
    assert not (tmp_path / "stolen").exists()
    await portal.until(lambda: len(_denials(portal, alice.login)) > before)
    new = _denials(portal, alice.login)[before:]
    assert all(e.reason is AccessDeniedReason.NOT_FOUND for e in new)


async def test_a_temporary_name_is_registered_only_once_renamed(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``put`` to ``up.tmp`` registers nothing (the user sees it, as an upload in progress);
    ``rename`` to ``up.bin`` registers ``up.bin`` with the same bytes."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(100_000)
    (tmp_path / "up").write_bytes(data)
    put = portal.sftp(alice, [f"put up /{dest}/up.tmp", f"ls /{dest}"], cwd=tmp_path)
    assert put.returncode == 0, put.stderr + portal.log("portal")
    assert "up.tmp" in put.stdout
    await asyncio.sleep(1.0)
    targets = {e.target for e in portal.events(DataFileRegistered) if e.destination == dest}
    assert "up.tmp" not in targets
    assert "up.bin" not in targets
    moved = portal.sftp(alice, [f"rename /{dest}/up.tmp /{dest}/up.bin"], cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr + portal.log("portal")
    await portal.until(
        lambda: any(
            e.destination == dest and e.target == "up.bin" for e in portal.events(TransferQueued)
        )
    )
    stored = {e.data_file_id: e for e in portal.events(DataFileStored)}
    registered = [e for e in portal.events(DataFileRegistered) if e.target == "up.bin"]
    assert stored[registered[0].data_file_id].size == len(data)
    assert "up.tmp" not in {e.target for e in portal.events(DataFileRegistered)}


async def test_an_upload_cut_midway_registers_nothing_and_leaves_no_object(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """An ``sftp put`` killed midway: its registration is closed as failed, no transfer is
    queued and no object is left in the store."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(1024**3)  # 1 GiB of zeros: far more than arrives before the kill
    batch = tmp_path / "batch"
    batch.write_text(f"put big.bin /{dest}/big.bin\n")
    argv = [
        "sftp", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(alice.key),
        *SSH_OPTIONS, "-P", str(portal.sftp_port), "-b", str(batch), f"{alice.login}@127.0.0.1",
    ]  # fmt: skip
    client = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await portal.until(
            lambda: any(e.target == "big.bin" for e in portal.events(DataFileRegistered))
        )
        await asyncio.sleep(0.5)  # some bytes on their way into the store
    finally:
        client.kill()
        await client.wait()
    registered = next(e for e in portal.events(DataFileRegistered) if e.target == "big.bin")
    dfid = registered.data_file_id
    try:
        await portal.until(
            lambda: any(e.data_file_id == dfid for e in portal.events(DataFileRegistrationFailed))
        )
    except BaseException:
        print(portal.log("portal"))
        raise
    assert not any(e.data_file_id == dfid for e in portal.events(DataFileStored))
    assert not any(e.data_file_id == dfid for e in portal.events(TransferQueued))
    assert not list(portal.store.rglob(f"*{dfid}*"))
    assert not any(e.path == "big.bin" for e in portal.events(PortalUploaded))


@pytest.mark.parametrize("legacy", [True, False], ids=["scp-O", "scp-sftp-mode"])
async def test_scp_pushes_and_pulls(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path, legacy: bool
) -> None:
    """``scp -O`` (the SCP protocol) and plain ``scp`` (SFTP mode, exit status 0 expected at
    the end of the session) put a file with a key and get it back with a password."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    name = f"scp-{int(legacy)}.bin"
    data = os.urandom(500_000)
    (tmp_path / "s.bin").write_bytes(data)
    put = portal.scp(alice, "s.bin", f":/{dest}/{name}", cwd=tmp_path, legacy=legacy)
    assert put.returncode == 0, put.stderr + portal.log("portal")
    await portal.listed(dest, name)
    got = portal.scp(
        alice, f":/{dest}/{name}", "back.bin", password=alice.password, cwd=tmp_path, legacy=legacy
    )
    assert got.returncode == 0, got.stderr + portal.log("portal")
    assert (tmp_path / "back.bin").read_bytes() == data


async def test_a_partial_download_does_not_mark_the_transfer_done(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``curl -r 0-99 sftp://...`` reads 100 bytes: a ``PortalDownloaded`` that is not
    complete, and the held transfer stays held (no ``TransferDownloaded``)."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(200_000)
    (tmp_path / "p.bin").write_bytes(data)
    put = portal.sftp(alice, [f"put p.bin /{dest}/partial.bin"], cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    await portal.listed(dest, "partial.bin")
    url = f"sftp://127.0.0.1:{portal.sftp_port}/{dest}/partial.bin"
    head = await asyncio.to_thread(
        subprocess.run,
        ["curl", "-sS", "-k", "-u", f"{alice.login}:{alice.password}", "-r", "0-99", url],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert head.returncode == 0, head.stderr
    assert head.stdout == data[:100]
    transfer = next(
        e.transfer_id
        for e in portal.events(TransferQueued)
        if e.destination == dest and e.target == "partial.bin"
    )
    await portal.until(
        lambda: any(e.transfer_id == transfer for e in portal.events(PortalDownloaded))
    )
    download = next(e for e in portal.events(PortalDownloaded) if e.transfer_id == transfer)
    assert not download.complete
    assert download.bytes_sent < len(data)
    await asyncio.sleep(1.0)
    assert not any(e.transfer_id == transfer for e in portal.events(TransferDownloaded))
    rows = await portal.rows("SELECT status FROM transfers WHERE transfer_id = %s", transfer)
    assert rows == [("HOLD",)]


async def test_a_user_past_max_connections_is_turned_away(
    portal: PortalStack, tmp_path: Path
) -> None:
    """``portal.maxConnections: 0``: the signed-in connection is closed at once and a
    MAX_CONNECTIONS denial is published."""
    full = portal.site(f"full-{portal.tag}", "full-secret")
    await portal.apply(
        f"""
users:
  - login: full-{portal.tag}
    destinations: [pickup-{portal.tag}]
    operations: [dir]
    properties:
      portal.maxConnections: "0"
    ssh_authorized_keys: ["{full.public}"]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    done = portal.sftp(full, [f"ls /pickup-{portal.tag}"], cwd=tmp_path)
    assert done.returncode != 0
    await portal.until(
        lambda: any(
            e.reason is AccessDeniedReason.MAX_CONNECTIONS for e in _denials(portal, full.login)
        )
    )


async def test_folder_rename_and_delete_operations_follow_their_grants(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """With the grants, ``mkdir``/``rmdir`` make and drop a folder of the view, ``rm`` drops
    an upload in progress; without them (``reader``: dir size mtime) each is refused with a
    NO_PERMISSION denial naming its operation; a registered file is never deleted."""
    alice, reader, dest = sites["alice"], sites["reader"], f"pickup-{portal.tag}"
    (tmp_path / "t").write_bytes(b"t" * 10)
    allowed = portal.sftp(
        alice,
        [
            f"mkdir /{dest}/made",
            f"ls /{dest}/made",
            f"rmdir /{dest}/made",
            f"put t /{dest}/gone.tmp",
            f"rm /{dest}/gone.tmp",
        ],
        cwd=tmp_path,
    )
    assert allowed.returncode == 0, allowed.stderr + portal.log("portal")
    listing = portal.sftp(alice, [f"ls /{dest}"], cwd=tmp_path)
    assert "gone.tmp" not in listing.stdout
    assert "made" not in listing.stdout
    registered = portal.sftp(alice, [f"rm /{dest}/data.bin"], cwd=tmp_path)
    assert registered.returncode != 0
    for command in (f"mkdir /{dest}/no", f"rmdir /{dest}/no", f"rename /{dest}/a /{dest}/b"):
        refused = portal.sftp(reader, [command], cwd=tmp_path)
        assert refused.returncode != 0, command
    await portal.until(
        lambda: (
            {e.operation for e in _denials(portal, reader.login)} >= {"mkdir", "rmdir", "rename"}
        )
    )


async def test_a_spent_download_quota_turns_new_sessions_away(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``portal.maxDownloadBytes`` 100 KB a day: a 200 KB download finishes (the session was
    open), the next session is refused with a QUOTA_EXCEEDED denial."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    (tmp_path / "q.bin").write_bytes(os.urandom(200_000))
    put = portal.sftp(alice, [f"put q.bin /{dest}/quota.bin"], cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    await portal.listed(dest, "quota.bin")
    thrifty = portal.site(f"thrifty-{portal.tag}", "thrifty-secret")
    await portal.apply(
        f"""
users:
  - login: thrifty-{portal.tag}
    destinations: [{dest}]
    operations: [dir, get, size]
    properties:
      portal.maxDownloadBytes: 100KB
      portal.downloadPeriod: 1d
    ssh_authorized_keys: ["{thrifty.public}"]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    first = portal.sftp(thrifty, [f"get /{dest}/quota.bin one.bin"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "one.bin").stat().st_size == 200_000
    second = portal.sftp(thrifty, [f"get /{dest}/quota.bin two.bin"], cwd=tmp_path)
    assert second.returncode != 0
    assert not (tmp_path / "two.bin").exists()
    await portal.until(
        lambda: any(
            e.reason is AccessDeniedReason.QUOTA_EXCEEDED for e in _denials(portal, thrifty.login)
        )
    )


async def test_rclone_sftp_lists_copies_both_ways_and_checks(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """rclone's sftp remote (key sign-in, no shell, writes in order): ``lsl`` lists, ``copy``
    pushes a folder and pulls a file back, ``check`` finds both sides the same by size."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    env = {
        **os.environ,
        "RCLONE_CONFIG_P_TYPE": "sftp",
        "RCLONE_CONFIG_P_HOST": "127.0.0.1",
        "RCLONE_CONFIG_P_PORT": str(portal.sftp_port),
        "RCLONE_CONFIG_P_USER": alice.login,
        "RCLONE_CONFIG_P_KEY_FILE": str(alice.key),
        "RCLONE_CONFIG_P_SHELL_TYPE": "none",
        "RCLONE_CONFIG_P_DISABLE_HASHCHECK": "true",
        # uploads stream into the store, so they must arrive in order (as with rclone's own
        # ``serve sftp`` without a cache); rclone's concurrent writes end, after three writes,
        # with SSH_FX_BAD_MESSAGE from asyncssh's packet parser (issue 14, left open)
        "RCLONE_CONFIG_P_DISABLE_CONCURRENT_WRITES": "true",
    }

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["rclone", "--config", "/dev/null", "--retries", "1", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    up = tmp_path / "up"
    up.mkdir()
    (up / "by-rclone.bin").write_bytes(os.urandom(123_456))
    pushed = await asyncio.to_thread(rclone, "copy", str(up), f"p:{dest}")
    assert pushed.returncode == 0, pushed.stderr + portal.log("portal")
    await portal.listed(dest, "by-rclone.bin")
    listed = await asyncio.to_thread(rclone, "lsl", f"p:{dest}")
    assert listed.returncode == 0, listed.stderr
    assert "123456 " in listed.stdout
    assert "by-rclone.bin" in listed.stdout
    down = tmp_path / "down"
    pulled = await asyncio.to_thread(rclone, "copy", f"p:{dest}/by-rclone.bin", str(down))
    assert pulled.returncode == 0, pulled.stderr
    assert (down / "by-rclone.bin").read_bytes() == (up / "by-rclone.bin").read_bytes()
    checked = await asyncio.to_thread(
        rclone, "check", str(up), f"p:{dest}", "--one-way", "--size-only"
    )
    assert checked.returncode == 0, checked.stderr


async def test_lftp_sftp_puts_lists_gets_and_is_refused_what_is_not_granted(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """lftp's sftp (ssh as its connect program): ``put`` with a key registers the file (an
    upload event), ``ls -l`` lists it with its size once projected, ``get`` and ``mirror``
    return the same bytes; reader (password sign-in, no ``get`` or ``put``) is refused both, as
    denied-access events, and gets nothing."""
    alice, reader, dest = sites["alice"], sites["reader"], f"pickup-{portal.tag}"
    data = os.urandom(700_001)
    (tmp_path / "up.bin").write_bytes(data)
    pushed = await asyncio.to_thread(
        portal.lftp, alice, [f"put up.bin -o /{dest}/by-lftp.bin"], cwd=tmp_path
    )
    assert pushed.returncode == 0, pushed.stderr + portal.log("portal")
    await portal.until(
        lambda: any(
            e.user == alice.login and e.path == "by-lftp.bin" for e in portal.events(PortalUploaded)
        )
    )
    up = next(e for e in portal.events(PortalUploaded) if e.path == "by-lftp.bin")
    assert (up.size, up.protocol, up.destination) == (len(data), "sftp", dest)
    await portal.listed(dest, "by-lftp.bin")
    pulled = await asyncio.to_thread(
        portal.lftp,
        alice,
        [f"ls -l /{dest}", f"get /{dest}/by-lftp.bin -o back.bin"],
        cwd=tmp_path,
    )
    assert pulled.returncode == 0, pulled.stderr + portal.log("portal")
    line = next(n for n in pulled.stdout.splitlines() if n.endswith(" by-lftp.bin"))
    assert " 700001 " in line
    assert (tmp_path / "back.bin").read_bytes() == data
    mirrored = await asyncio.to_thread(
        portal.lftp, alice, [f"mirror /{dest} mirrored"], cwd=tmp_path
    )  # lftp's mirror lists "<folder>/." first
    assert mirrored.returncode == 0, mirrored.stderr + portal.log("portal")
    assert (tmp_path / "mirrored" / "by-lftp.bin").read_bytes() == data

    got = await asyncio.to_thread(
        portal.lftp,
        reader,
        [f"get /{dest}/by-lftp.bin -o denied.bin"],
        password=reader.password,
        cwd=tmp_path,
    )
    assert got.returncode != 0
    assert "not permitted" in got.stderr
    assert not (tmp_path / "denied.bin").exists()
    put = await asyncio.to_thread(
        portal.lftp,
        reader,
        [f"put up.bin -o /{dest}/by-reader.bin"],
        password=reader.password,
        cwd=tmp_path,
    )
    assert put.returncode != 0
    assert "not permitted" in put.stderr

    def refused() -> list[tuple[str | None, str | None]]:
        return [
            (e.operation, e.path)
            for e in _denials(portal, reader.login)
            if e.reason is AccessDeniedReason.NO_PERMISSION
        ]

    await portal.until(lambda: ("put", f"/{dest}/by-reader.bin") in refused())
    assert ("get", f"/{dest}/by-lftp.bin") in refused()
    assert not any(e.path == "by-reader.bin" for e in portal.events(PortalUploaded))


async def test_an_upload_past_the_users_max_file_size_is_refused_midway(
    portal: PortalStack, tmp_path: Path
) -> None:
    """A data user's ``max_file_size`` caps its uploads as the ingest API's: a larger ``put``
    fails, its registration is closed failed with the cap's reason and nothing is queued; a
    temporary name is capped too."""
    small = portal.site(f"small-{portal.tag}", "small-secret")
    dest = f"pickup-{portal.tag}"
    await portal.apply(
        f"""
users:
  - login: small-{portal.tag}
    destinations: [{dest}]
    operations: [dir, put]
    properties:
      max_file_size: "100000"
    ssh_authorized_keys: ["{small.public}"]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    (tmp_path / "big.bin").write_bytes(os.urandom(300_000))
    put = portal.sftp(small, [f"put big.bin /{dest}/capped.bin"], cwd=tmp_path)
    assert put.returncode != 0
    staged = portal.sftp(small, [f"put big.bin /{dest}/capped.tmp"], cwd=tmp_path)
    assert staged.returncode != 0
    await portal.until(
        lambda: any(e.target == "capped.bin" for e in portal.events(DataFileRegistered))
    )
    dfid = next(e for e in portal.events(DataFileRegistered) if e.target == "capped.bin")
    await portal.until(
        lambda: any(
            e.data_file_id == dfid.data_file_id and "max file size" in e.message
            for e in portal.events(DataFileRegistrationFailed)
        )
    )
    assert not any(e.target == "capped.bin" for e in portal.events(TransferQueued))
    listing = portal.sftp(small, [f"ls /{dest}"], cwd=tmp_path)
    assert "capped.tmp" not in listing.stdout


async def test_a_resumed_download_completes_the_file_but_does_not_mark_it_done(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``reget`` resumes from the bytes a client already has: the file ends whole and equal,
    served from the store at that offset; not being read from its first byte, it is a
    ``PortalDownloaded`` that is not complete and the held transfer stays held."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(400_000)
    (tmp_path / "r.bin").write_bytes(data)
    put = portal.sftp(alice, [f"put r.bin /{dest}/resumed.bin"], cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    await portal.listed(dest, "resumed.bin")
    (tmp_path / "local.bin").write_bytes(data[:150_000])
    resumed = portal.sftp(alice, [f"reget /{dest}/resumed.bin local.bin"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr + portal.log("portal")
    assert (tmp_path / "local.bin").read_bytes() == data
    transfer = next(
        e.transfer_id
        for e in portal.events(TransferQueued)
        if e.destination == dest and e.target == "resumed.bin"
    )
    await portal.until(
        lambda: any(e.transfer_id == transfer for e in portal.events(PortalDownloaded))
    )
    download = next(e for e in portal.events(PortalDownloaded) if e.transfer_id == transfer)
    assert not download.complete
    assert download.bytes_sent == len(data) - 150_000
    rows = await portal.rows("SELECT status FROM transfers WHERE transfer_id = %s", transfer)
    assert rows == [("HOLD",)]


async def test_a_destination_grouped_by_date_shows_date_folders(
    portal: PortalStack, tmp_path: Path
) -> None:
    """``group_by_date`` with ``date_format: yyyy-MM-dd``: the destination lists one folder
    per day transfers were queued (UTC), the file is listed and read inside it, a name put at
    the top is its own target, and a date folder that is not there holds nothing."""
    dest = f"dated-{portal.tag}"
    dater = portal.site(f"dater-{portal.tag}", "dater-secret")
    await portal.apply(
        f"""
destinations:
  - name: {dest}
    type: dissemination
    transfer_group: portal-{portal.tag}
    standby: true
    group_by_date: true
    date_format: yyyy-MM-dd
users:
  - login: dater-{portal.tag}
    destinations: [{dest}]
    operations: [dir, get, put, size]
    ssh_authorized_keys: ["{dater.public}"]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    data = os.urandom(50_000)
    (tmp_path / "d.bin").write_bytes(data)
    put = portal.sftp(dater, [f"put d.bin /{dest}/d.bin"], cwd=tmp_path)
    assert put.returncode == 0, put.stderr + portal.log("portal")
    await portal.listed(dest, "d.bin")
    queued = next(e for e in portal.events(TransferQueued) if e.destination == dest)
    folder = queued.queue_time.astimezone(UTC).strftime("%Y-%m-%d")
    top = portal.sftp(dater, [f"ls /{dest}"], cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert folder in top.stdout
    assert "d.bin" not in top.stdout
    inside = portal.sftp(dater, [f"ls -l /{dest}/{folder}"], cwd=tmp_path)
    assert "d.bin" in inside.stdout
    got = portal.sftp(dater, [f"get /{dest}/{folder}/d.bin back.bin"], cwd=tmp_path)
    assert got.returncode == 0, got.stderr + portal.log("portal")
    assert (tmp_path / "back.bin").read_bytes() == data
    missing = portal.sftp(dater, [f"get /{dest}/2000-01-01/d.bin old.bin"], cwd=tmp_path)
    assert missing.returncode != 0
    assert not (tmp_path / "old.bin").exists()


async def test_rclone_sftp_pushes_several_files_at_once_lists_pulls_and_checks(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """rclone's sftp remote (Go's pkg/sftp, concurrent writes, first writes in oversized
    packets) pushes six files four at a time, lists them, pulls them back and ``check`` finds
    both sides the same."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    files = {f"rc-{n}.bin": os.urandom(700_000 + n * 4099) for n in range(6)}
    for name, data in files.items():
        (up / name).write_bytes(data)
    pushed = await asyncio.to_thread(
        portal.rclone, alice, "sftp", "copy", "--transfers", "4", str(up), f"p:{dest}"
    )
    assert pushed.returncode == 0, pushed.stderr + portal.log("portal")
    for name in files:
        await portal.listed(dest, name)
    listed = await asyncio.to_thread(portal.rclone, alice, "sftp", "lsl", f"p:{dest}")
    assert listed.returncode == 0, listed.stderr
    sizes = {line.split()[-1]: int(line.split()[0]) for line in listed.stdout.splitlines()}
    assert {name: sizes.get(name) for name in files} == {n: len(d) for n, d in files.items()}
    pulled = await asyncio.to_thread(
        portal.rclone, alice, "sftp", "copy", "--include", "rc-*.bin", f"p:{dest}", str(down)
    )
    assert pulled.returncode == 0, pulled.stderr
    assert {p.name: p.read_bytes() for p in down.iterdir()} == files
    checked = await asyncio.to_thread(
        portal.rclone, alice, "sftp", "check", str(up), f"p:{dest}", "--one-way", "--size-only"
    )
    assert checked.returncode == 0, checked.stderr


async def test_a_session_in_progress_is_reported_and_shown_until_it_ends(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """An SFTP session held open is in the portal's next ``PortalSessionsReported`` and in
    the monitor's sessions in progress (user, protocol, client); once it ends, a report
    names it no more and the monitor lists it no more."""
    alice = sites["alice"]

    def reported(present: bool) -> Callable[[], bool]:
        def check() -> bool:
            reports = portal.events(PortalSessionsReported)
            return bool(reports) and present == any(
                s.user == alice.login for s in reports[-1].sessions
            )

        return check

    connections = pool(portal.settings.pg_dsn, portal.schema, size=1)
    await connections.open()
    try:
        queries = Queries(connections)

        async def shown(empty: bool) -> list[Row]:
            """Alice's sessions the monitor lists, once they are (or are not) ``empty``."""
            deadline = time.monotonic() + WAIT
            while True:
                rows = await queries.portal_sessions()
                mine = [r for r in rows if r["data_user"] == alice.login]
                if bool(mine) != empty or time.monotonic() > deadline:
                    return mine
                await asyncio.sleep(0.2)

        async with asyncssh.connect(
            "127.0.0.1",
            portal.sftp_port,
            username=alice.login,
            password=alice.password,
            known_hosts=None,
            client_keys=None,
        ) as conn:
            await portal.until(reported(True))
            report = portal.events(PortalSessionsReported)[-1]
            assert report.period_ms > 0
            mine = [s for s in report.sessions if s.user == alice.login]
            assert [(s.protocol, s.client_address) for s in mine] == [("sftp", "127.0.0.1")]
            rows = await shown(empty=False)
            assert [(r["protocol"], r["client_address"]) for r in rows] == [("sftp", "127.0.0.1")]
            conn.close()
        await portal.until(reported(False))
        assert await shown(empty=True) == []
    finally:
        await connections.close()
