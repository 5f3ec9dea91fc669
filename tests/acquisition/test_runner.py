"""The acquisition runner against real providers and real Kafka: discovery, retrieval into the
store, hand-off to the destination and its aliases, dedup across a restart, requeue of a
rewritten file, deletion of originals, and the failure paths (hung provider, provider gone
mid-download)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from bus.events.acquisition import (
    Completeness,
    DiscoveryReason,
    FileDiscovered,
    ListingCompleted,
    RetrievalFailed,
    RetrievalSucceeded,
)
from bus.events.base import TransferStatus
from bus.events.config import (
    Alias,
    Association,
    Destination,
    DestinationType,
    Host,
    HostType,
    TransferGroup,
)
from bus.events.datafiles import DataFileRegistrationFailed, DataFileStored
from bus.events.transfers import TransferQueued
from tests.acquisition.conftest import Env
from tests.conftest import free_port

GROUP = TransferGroup(name="acq-group")


def destination(name: str, **kw: object) -> Destination:
    return Destination(name=name, type=DestinationType.ACQUISITION, transfer_group=GROUP.name, **kw)  # type: ignore[arg-type]


def host(name: str, protocol: str, address: str, directory: str, **kw: object) -> Host:
    """An acquisition host polled every 300 ms whose files count as whole once seen unchanged
    for 200 ms (the default 10 s is exercised by tests/acquisition/test_stable.py)."""
    options = {"acquisition.stableInterval": "200ms", **kw.pop("options", {})}  # type: ignore[dict-item]
    return Host(
        id=name, nickname=name, type=HostType.ACQUISITION, protocol=protocol, address=address,
        directory=directory, polling_frequency_ms=kw.pop("polling", 300), options=options,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


T = TypeVar("T")


def kinds(events: Sequence[object], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def write(path: Path, data: bytes, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


async def test_local_folder_discovery_dedup_restart_and_requeue(env: Env, tmp_path: Path) -> None:
    """Files dropped in a folder are acquired once, queued to the destination and its standby
    alias, not again after a restart, and again when rewritten (newer and another size)."""
    folder = tmp_path / "provider"
    write(folder / "a.grib", b"A" * 100, time.time() - 60)
    write(folder / "b.grib", b"B" * 200, time.time() - 60)
    write(folder / "skip.txt", b"no")
    await env.define(
        GROUP,
        destination("portal-a", standby=True),
        destination("acq-a", aliases=(Alias(destination="portal-a"),)),
        host("file-a", "file", "localhost", f"{folder}/{{.*\\.grib}}"),
        Association(destination="acq-a", host="file-a"),
    )
    names = env.names
    async with env.runner():
        await env.until(
            names.acquisition,
            lambda es: (
                len([e for e in kinds(es, RetrievalSucceeded) if e.host_id == "file-a"]) == 2
            ),
        )
    events = await env.acquisition("file-a")
    found = kinds(events, FileDiscovered)
    assert sorted(e.name for e in found) == ["a.grib", "b.grib"]
    assert all(e.reason is DiscoveryReason.NEW for e in found)
    # taken by the listing that saw them unchanged for the stable interval, not the first
    first, *_ = [e for e in kinds(events, ListingCompleted) if e.files_new]
    assert (first.entries_listed, first.files_matched, first.files_new) == (3, 2, 2)
    queued = [
        e
        for e in kinds(await env.events(names.topics.transfers), TransferQueued)
        if e.target in ("a.grib", "b.grib")
    ]
    by_dest = {(e.destination, e.target): e for e in queued}
    assert by_dest[("acq-a", "a.grib")].status is TransferStatus.WAIT
    assert by_dest[("portal-a", "a.grib")].status is TransferStatus.HOLD
    assert by_dest[("acq-a", "b.grib")].size == 200

    # restart: the state comes back from the log, the same files are not acquired again
    async with env.runner() as scheduler:
        await env.until(
            names.acquisition,
            lambda es: (
                len([e for e in kinds(es, ListingCompleted) if e.host_id == "file-a"])
                >= len(kinds(events, ListingCompleted)) + 3
            ),
        )
        again = await env.acquisition("file-a")
        assert len(kinds(again, FileDiscovered)) == 2
        assert all(r.listing.files_new == 0 for r in scheduler.reports)
        # the provider rewrites a.grib: newer and bigger, so it is acquired again
        write(folder / "a.grib", b"A" * 150)
        await env.until(
            names.acquisition,
            lambda es: (
                len([e for e in kinds(es, RetrievalSucceeded) if e.host_id == "file-a"]) == 3
            ),
        )
    after = await env.acquisition("file-a")
    rewrite = kinds(after, FileDiscovered)[-1]
    assert (rewrite.name, rewrite.reason, rewrite.size) == (
        "a.grib",
        DiscoveryReason.REWRITTEN,
        150,
    )
    stored = {
        e.data_file_id: e for e in kinds(await env.events(names.topics.datafiles), DataFileStored)
    }
    last = kinds(after, RetrievalSucceeded)[-1]
    assert stored[last.data_file_id].size == 150


async def test_delete_original_after_verified_retrieval(env: Env, tmp_path: Path) -> None:
    """With ``acquisition.deleteoriginal`` the provider's file is removed once it is stored."""
    folder = tmp_path / "drop"
    write(folder / "x.dat", b"x" * 10)
    await env.define(
        GROUP,
        destination("acq-del"),
        host(
            "file-del",
            "file",
            "localhost",
            f"{folder}/{{.*}}",
            options={"acquisition.deleteoriginal": "yes"},
        ),
        Association(destination="acq-del", host="file-del"),
    )
    async with env.runner():
        await env.until(
            env.names.acquisition,
            lambda es: any(
                isinstance(e, RetrievalSucceeded) and e.host_id == "file-del" for e in es
            ),
        )
    done = kinds(await env.acquisition("file-del"), RetrievalSucceeded)
    assert done[0].deleted_original
    assert not (folder / "x.dat").exists()


async def test_hung_provider_is_cut_off_without_blocking_others(env: Env, tmp_path: Path) -> None:
    """A provider that accepts but never answers is cut off at its maximum duration and polled
    again, while another host keeps being polled and acquires its file meanwhile."""
    hung_port = free_port()
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)  # never a greeting: the FTP client waits forever

    server = await asyncio.start_server(swallow, "127.0.0.1", hung_port)
    folder = tmp_path / "ok"
    write(folder / "ok.dat", b"ok")
    await env.define(
        GROUP,
        destination("acq-hang"),
        host(
            "hung", "ftp", f"127.0.0.1:{hung_port}", "/in/{.*}", login="u",
            options={"acquisition.maximumDuration": "2s"},
        ),
        host("file-ok", "file", "localhost", f"{folder}/{{.*}}"),
        Association(destination="acq-hang", host="hung"),
        Association(destination="acq-hang", host="file-ok"),
    )  # fmt: skip
    try:
        async with env.runner():
            await env.until(
                env.names.acquisition,
                lambda es: (
                    len([e for e in kinds(es, ListingCompleted) if e.host_id == "hung"]) >= 2
                ),
                timeout=20,
            )
    finally:
        server.close()
        for w in accepted:
            w.close()
    hung = kinds(await env.acquisition("hung"), ListingCompleted)
    assert all(e.timed_out and 1900 <= e.duration_ms < 4000 for e in hung)
    assert "cut off" in hung[0].errors[0]
    ok = await env.acquisition("file-ok")
    got = kinds(ok, RetrievalSucceeded)
    assert got
    assert got[0].envelope.occurred_at < hung[0].envelope.occurred_at
    assert len(kinds(ok, ListingCompleted)) >= 3


async def test_provider_gone_mid_download_registers_nothing_and_retries(env: Env) -> None:
    """A download cut short fails with the sizes (no stored file, nothing queued) and the file
    is retrieved whole at a later poll."""
    payload = b"z" * 200_000
    gets = 0

    async def listing(_request: web.Request) -> web.Response:
        return web.json_response([{"name": "z.bin", "size": len(payload), "mtime": 1_700_000_000}])

    async def fetch(request: web.Request) -> web.StreamResponse:
        nonlocal gets
        gets += request.method == "GET"  # not the HEAD that asks the size before the download
        response = web.StreamResponse(headers={"Content-Length": str(len(payload))})
        await response.prepare(request)
        if gets == 1:
            await response.write(payload[:50_000])
            assert request.transport is not None
            request.transport.abort()  # the provider vanishes mid-download
            return response
        await response.write(payload)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/files/", listing)
    app.router.add_get("/files", listing)
    app.router.add_get("/files/z.bin", fetch)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await env.define(
            GROUP,
            destination("acq-gone"),
            host(
                "flaky", "http", f"127.0.0.1:{port}", "/files/{.*}",
                options={"http.parser": "json", "http.urldir": "no"}, polling=500,
            ),
            Association(destination="acq-gone", host="flaky"),
        )  # fmt: skip
        async with env.runner():
            await env.until(
                env.names.acquisition,
                lambda es: any(
                    isinstance(e, RetrievalSucceeded) and e.host_id == "flaky" for e in es
                ),
            )
    finally:
        await runner.cleanup()
    events = await env.acquisition("flaky")
    failed = kinds(events, RetrievalFailed)
    assert failed
    assert failed[0].retriable
    assert failed[0].expected_size == len(payload)
    assert (failed[0].received_size or 0) < len(payload)
    datafiles = await env.events(env.names.topics.datafiles)
    broken = failed[0].data_file_id
    assert broken is not None
    assert not [e for e in kinds(datafiles, DataFileStored) if e.data_file_id == broken]
    assert [e for e in kinds(datafiles, DataFileRegistrationFailed) if e.data_file_id == broken]
    queued = [
        e for e in kinds(await env.events(env.names.topics.transfers), TransferQueued)
        if e.destination == "acq-gone"
    ]  # fmt: skip
    assert len(queued) == 1
    assert queued[0].size == len(payload)


async def test_start_closes_registrations_a_crash_left_open(env: Env) -> None:
    """An acquisition registration without its Stored (a crash mid-retrieval) is marked failed
    at start, so the retry is not refused as a duplicate."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from bus.events.base import Envelope
    from bus.events.datafiles import DataFileRegistered

    dfid = uuid.uuid4().hex
    await env.publisher.publish(
        env.names.topics.datafiles,
        dfid,
        DataFileRegistered(
            envelope=Envelope(
                event_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), source="test",
                correlation_id=dfid,
            ),
            data_file_id=dfid, destination="acq-a", target="crashed.grib",
            transfer_group=GROUP.name, expiry_time=datetime.now(UTC) + timedelta(days=1),
            requested_by="acquisition/file-a",
        ),
    )  # fmt: skip
    async with env.runner():
        pass
    failed = [
        e
        for e in kinds(await env.events(env.names.topics.datafiles), DataFileRegistrationFailed)
        if e.data_file_id == dfid
    ]
    assert [(e.stage, e.retriable) for e in failed] == [("recovery", True)]


async def test_a_companion_file_or_an_age_vouches_for_a_file(env: Env, tmp_path: Path) -> None:
    """With ``companion`` a file waits until its companion is listed, then is taken at once
    (COMPANION); with a lower bound in ``fileage`` an old enough file is taken without
    watching it (AGE)."""
    folder = tmp_path / "provider"
    write(folder / "c.grib", b"C" * 300)
    write(folder / "o.dat", b"O" * 400, time.time() - 600)
    write(folder / "young.dat", b"Y" * 10)  # too young for the age rule: never taken
    await env.define(
        GROUP,
        destination("acq-vouch"),
        host(
            "file-companion", "file", "localhost", f"{folder}/{{.*\\.grib}}",
            options={"acquisition.companion": ".done", "acquisition.stableInterval": "1h"},
        ),
        host(
            "file-age", "file", "localhost", f"{folder}/{{.*\\.dat}}",
            options={"acquisition.fileage": ">=5m", "acquisition.stableInterval": "1h"},
        ),
        Association(destination="acq-vouch", host="file-companion"),
        Association(destination="acq-vouch", host="file-age"),
    )  # fmt: skip
    async with env.runner():
        await env.until(env.names.acquisition, lambda es: any(
            isinstance(e, RetrievalSucceeded) and e.host_id == "file-age" for e in es
        ))  # fmt: skip
        await env.until(env.names.acquisition, lambda es: len(
            [e for e in kinds(es, ListingCompleted) if e.host_id == "file-companion"]
        ) >= 3)  # fmt: skip
        assert not kinds(await env.acquisition("file-companion"), FileDiscovered)
        write(folder / "c.grib.done", b"")
        await env.until(env.names.acquisition, lambda es: any(
            isinstance(e, RetrievalSucceeded) and e.host_id == "file-companion" for e in es
        ))  # fmt: skip
    got = {
        e.path.rpartition("/")[2]: (e.size, e.completeness)
        for e in kinds(await env.events(env.names.acquisition), RetrievalSucceeded)
        if e.host_id in ("file-companion", "file-age")
    }
    assert got == {"c.grib": (300, Completeness.COMPANION), "o.dat": (400, Completeness.AGE)}
