"""The mover's pure parts: the commit tracker under concurrency, Location from a Host, paths,
temporary names and what a file found at the final name proves."""

from __future__ import annotations

import posixpath
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bus.errors import ConfigurationError
from bus.events.base import Compression
from bus.events.datafiles import Checksums
from bus.events.orders import TransferOrdered
from bus.events.transfers import Verification
from bus.templates.lexer import TemplateError
from consumers.movers import core
from protocols.base import Entry
from protocols.location import location_for
from tests.movers.support import Stored, host, order

NOW = datetime(2026, 11, 27, 6, 30, tzinfo=UTC)
OBJ = Stored(guid="0" * 32, store="file:///s", data=b"x" * 10)


def test_nothing_is_committable_while_the_first_order_runs() -> None:
    """Given orders 0..2 taken, when 1 and 2 finish, then nothing may be committed yet."""
    tracker: core.OffsetTracker[str] = core.OffsetTracker()
    for offset in (0, 1, 2):
        tracker.begin("p0", offset)
    tracker.finish("p0", 1)
    tracker.finish("p0", 2)
    assert tracker.to_commit() == {}


def test_commit_stops_at_the_lowest_running_offset() -> None:
    """Given 5..8 taken and 5, 6, 8 finished, the committable position is 7 (7 still runs)."""
    tracker: core.OffsetTracker[str] = core.OffsetTracker()
    for offset in (5, 6, 7, 8):
        tracker.begin("p0", offset)
    for offset in (5, 6, 8):
        tracker.finish("p0", offset)
    assert tracker.to_commit() == {"p0": 7}
    tracker.committed({"p0": 7})
    assert tracker.to_commit() == {}
    tracker.finish("p0", 7)
    assert tracker.to_commit() == {"p0": 9}


def test_partitions_are_tracked_apart() -> None:
    """A running order on one partition never holds back another partition's commit."""
    tracker: core.OffsetTracker[str] = core.OffsetTracker()
    tracker.begin("p0", 0)
    tracker.begin("p1", 10)
    tracker.finish("p1", 10)
    assert tracker.to_commit() == {"p1": 11}
    assert tracker.in_flight("p0") == 1


def test_a_revoked_partition_is_never_committed() -> None:
    """Outcomes finishing after their partition was given away do not produce commits."""
    tracker: core.OffsetTracker[str] = core.OffsetTracker()
    tracker.assign("p0")
    tracker.begin("p0", 3)
    tracker.revoke("p0")
    tracker.finish("p0", 3)
    assert tracker.to_commit() == {}
    assert not tracker.owns("p0")


def test_committed_positions_only_move_forward() -> None:
    """A stale acknowledgement of a lower position does not move the recorded commit back."""
    tracker: core.OffsetTracker[str] = core.OffsetTracker()
    tracker.begin("p0", 0)
    tracker.finish("p0", 0)
    tracker.committed({"p0": 1})
    tracker.committed({"p0": 0})
    tracker.begin("p0", 1)
    tracker.finish("p0", 1)
    assert tracker.to_commit() == {"p0": 2}


def test_target_path_renders_the_directory_and_adds_the_codec_extension() -> None:
    """The template picks the matching line, appends the target after ``/``, adds ``.gz``."""
    target = host(
        "file", "", directory="($metadata[stream]==enfo) /ens/\n/data/$destination[name]/$date/"
    )
    ordered = order(OBJ, target, compression=Compression.GZIP, metadata={"stream": "oper"})
    assert core.target_path(ordered, "m1", NOW) == "/data/site-a/20261127/data/product.grib.gz"
    ens = order(OBJ, target, metadata={"stream": "enfo"})
    assert core.target_path(ens, "m1", NOW) == "/ens/data/product.grib"


def test_a_rendered_remote_path_wins_over_the_template() -> None:
    """An order whose scheduler rendered the path is delivered there (extension added once)."""
    target = host("file", "", directory="/ignored/")
    ordered = order(OBJ, target, remote_path="/given/f.zst", compression=Compression.ZSTD)
    assert core.target_path(ordered, "m1", NOW) == "/given/f.zst"


def test_an_invalid_template_is_a_permanent_configuration_error() -> None:
    """A broken Host Directory raises TemplateError, which is not retriable."""
    ordered = order(OBJ, host("file", "", directory="($host[nope]==x) /a/"))
    with pytest.raises(TemplateError) as raised:
        core.target_path(ordered, "m1", NOW)
    assert raised.value.retriable is False


def test_rates_parse_with_units() -> None:
    """``upload.rateThrottling`` accepts plain bytes/s and k/M/G units; empty is unlimited."""
    assert core.parse_rate("1048576") == 1048576
    assert core.parse_rate("4MB") == 4 * 1024 * 1024
    assert core.parse_rate("500k/s") == 500 * 1024
    assert core.parse_rate("") is None
    with pytest.raises(ConfigurationError):
        core.parse_rate("fast")


def test_destination_limit_is_the_hosts_max_connections_within_capacity() -> None:
    """A destination runs at most its host's max connections, never above the mover capacity."""
    assert core.destination_limit(order(OBJ, host("file", "", max_connections=2)), 8) == 2
    assert core.destination_limit(order(OBJ, host("file", "", max_connections=50)), 8) == 8


def test_a_temporary_name_is_derived_from_the_transfer_and_attempt() -> None:
    """``.<name>.<tag>.<attempt>.tmp`` beside the final name, the tag the transfer id's; the
    same order always gives the same name, a redelivery adds the mover's tag."""
    sent = replace(order(OBJ, host("sftp", "h", directory="/in/")), attempt=3)
    location = location_for(sent.host, None)
    tag = core.tag(sent.transfer_id)
    assert len(tag) == 8
    path = core.temporary_path(sent, location, "/in/data/product.grib")
    assert path == f"/in/data/.product.grib.{tag}.3.tmp"
    assert core.temporary_path(sent, location, "/in/data/product.grib") == path
    again = core.temporary_path(sent, location, "/in/data/product.grib", "mover-b")
    assert again == f"/in/data/.product.grib.{tag}.3.{core.tag('mover-b')}.tmp"


def test_temporary_names_follow_the_operators_options() -> None:
    """``prefix``/``suffix`` are kept as OpenECPDS operators set them; ``usetmp=no`` has none."""
    fixed = order(OBJ, host("ftp", "h", directory="/in/", options={"ftp.suffix": ".part"}))
    assert (
        core.temporary_path(fixed, location_for(fixed.host, None), "/in/a.grib")
        == "/in/.a.grib.part"
    )
    direct = order(OBJ, host("ftp", "h", directory="/in/", options={"ftp.usetmp": "no"}))
    assert core.temporary_path(direct, location_for(direct.host, None), "/in/a.grib") is None


def test_leftovers_are_this_transfers_earlier_attempts_only() -> None:
    """Attempt 3 removes the names of attempts 1..3 (and their redeliveries), never a later
    attempt's nor another transfer's."""
    sent = replace(order(OBJ, host("sftp", "h", directory="/in/")), attempt=3)
    other = order(OBJ, sent.host)
    location = location_for(sent.host, None)
    pattern = core.leftovers(sent, location, "product.grib")

    def name(o: TransferOrdered, a: int, m: str | None) -> str:
        path = core.temporary_path(replace(o, attempt=a), location, "product.grib", m)
        return posixpath.basename(path or "")

    names = {
        n: name(o, a, m)
        for n, (o, a, m) in {
            "first": (sent, 1, None),
            "own": (sent, 3, None),
            "redelivered": (sent, 2, "mover-a"),
            "later": (sent, 4, None),
            "other": (other, 1, None),
        }.items()
    }  # fmt: skip
    kept = {n for n, name in names.items() if core.is_leftover(pattern, sent, name)}
    assert kept == {"first", "own", "redelivered"}
    assert not core.is_leftover(pattern, sent, "product.grib")


def _entry(size: int = 10, mtime: datetime | None = NOW) -> Entry:
    return Entry("product.grib", size, mtime)


def test_a_file_found_is_this_transfers_only_with_its_size_and_time() -> None:
    """Found with the expected size and not older than the unsettled attempt: FOUND_SIZE;
    another size, an older file (the name's previous delivery) or nothing: send again."""
    sent = order(OBJ, host("sftp", "h"))
    since = NOW - timedelta(minutes=5)
    assert core.found(sent, _entry(), since, None) is Verification.FOUND_SIZE
    assert core.found(sent, _entry(mtime=None), since, None) is Verification.FOUND_SIZE
    assert core.found(sent, _entry(size=9), since, None) is None
    assert core.found(sent, _entry(mtime=since - timedelta(hours=1)), since, None) is None
    assert core.found(sent, None, since, None) is None


def test_a_file_found_is_checked_by_md5_where_the_remote_keeps_one() -> None:
    """A remote MD5 equal to the stored one gives FOUND_SIZE_AND_CHECKSUM; another MD5 means
    another file of the same size; a compressed transfer's size is unknown: send again."""
    sent = replace(order(OBJ, host("s3", "h")), checksums=Checksums(adler32="0", md5="ab" * 16))
    since = NOW - timedelta(minutes=5)
    assert core.found(sent, _entry(), since, "AB" * 16) is Verification.FOUND_SIZE_AND_CHECKSUM
    assert core.found(sent, _entry(), since, "cd" * 16) is None
    packed = replace(sent, compression=Compression.GZIP)
    assert core.found(packed, _entry(), since, "ab" * 16) is None


def test_a_redelivered_order_looks_since_its_own_order_time() -> None:
    """A first attempt that may have been taken by a crashed mover looks for a file written
    since it was ordered; a reissue keeps the scheduler's earlier time; else no look."""
    sent = order(OBJ, host("sftp", "h"))
    assert core.check_since(sent, redelivered=False) is None
    assert core.check_since(sent, redelivered=True) == sent.envelope.occurred_at
    early = sent.envelope.occurred_at - timedelta(minutes=3)
    reissued = replace(sent, attempt=2, check_since=early)
    assert core.check_since(reissued, redelivered=False) == early
    assert core.check_since(reissued, redelivered=True) == early


def test_names_deleted_unseen_are_the_last_attempts_own() -> None:
    """Where a listing hides dot files, attempt 5 deletes the names attempts 3 to 5 derived."""
    sent = replace(order(OBJ, host("ftp", "h")), attempt=5)
    location = location_for(sent.host, None)
    tag = core.tag(sent.transfer_id)
    assert core.derived_leftovers(sent, location, "/in/a.grib") == [
        f"/in/.a.grib.{tag}.{n}.tmp" for n in (3, 4, 5)
    ]
