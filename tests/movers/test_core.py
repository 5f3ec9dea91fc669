"""The mover's pure parts: the commit tracker under concurrency, Location from a Host, paths."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus.errors import ConfigurationError
from bus.events.base import Compression
from bus.templates.lexer import TemplateError
from consumers.movers import core
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


def test_location_from_host_strips_module_prefixes_and_keeps_the_base_path() -> None:
    """protocol -> scheme, address -> host/port/base, ``sftp.x`` and ``ectrans.x`` -> ``x``."""
    target = host(
        "sftp",
        "10.0.0.5:2222/incoming",
        login="alice",
        options={"sftp.mkdirs": "no", "ectrans.connectTimeOut": "5s", "other": "1"},
    )
    location = core.location_for(target, "pw")
    assert (location.scheme, location.host, location.port, location.path) == (
        "sftp",
        "10.0.0.5",
        2222,
        "/incoming",
    )
    assert (location.user, location.password) == ("alice", "pw")
    assert dict(location.options) == {"mkdirs": "no", "connectTimeOut": "5s", "other": "1"}


def test_azure_and_ftps_hosts_read_their_module_options() -> None:
    """``azure.*`` options reach an ``az`` host and ``ftp.*`` an ``ftps`` host, unprefixed; an
    address without a base path leaves the login directory as the base."""
    az = core.location_for(host("az", "h", options={"azure.useMD5": "yes"}), None)
    ftps = core.location_for(host("ftps", "h:21", options={"ftp.passive": "no"}), None)
    assert az.option("useMD5") == "yes"
    assert (ftps.option("passive"), ftps.port, ftps.path) == ("no", 21, ".")


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
