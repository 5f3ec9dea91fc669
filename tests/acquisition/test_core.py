"""Pure acquisition decisions: selection by regex/size/age/symlink, targets, dedup and requeue
rules, and the state rebuilt from events (given events, when a listing, then a decision)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from bus.events.acquisition import (
    Completeness,
    DiscoveryReason,
    FileDiscovered,
    RetrievalFailed,
    RetrievalSucceeded,
)
from bus.events.base import Envelope
from bus.events.datafiles import Checksums, DataFileRegistered, DataFileStored
from bus.templates.listing import parse_directory
from producers.acquisition.core import (
    DEFAULT_STABLE_INTERVAL_MS,
    Candidate,
    Known,
    RequeueRule,
    Sightings,
    Status,
    companion_of,
    decide,
    discover,
    parse_options,
    reason_for,
    rewritten,
    same_time,
    select,
    settled,
    vouched,
)
from producers.acquisition.state import AcquisitionState, requester
from protocols.base import Entry

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=1)


def listing(line: str, now: datetime = NOW):  # type: ignore[no-untyped-def]
    return parse_directory(line)[0].expand(now)[0]


def entry(name: str, size: int = 10, age: timedelta = timedelta(minutes=5), **kw: bool) -> Entry:
    return Entry(name, size, NOW - age, **kw)


def env(at: datetime = NOW) -> Envelope:
    return Envelope(event_id=str(uuid.uuid4()), occurred_at=at, source="t", correlation_id="x")


def test_regex_matches_whole_name_and_skips_dirs_and_symlinks() -> None:
    """Only entries whose full name matches the regex are taken; dirs and symlinks are not."""
    found = select(
        [
            entry("a.grib"),
            entry("a.grib.tmp"),
            entry("d.grib", is_dir=True),
            entry("l.grib", is_symlink=True),
        ],
        listing("/in/{.*\\.grib}"),
        parse_options({}),
        "dest",
        NOW,
    )
    assert [c.name for c in found] == ["a.grib"]
    assert found[0].path == "/in/a.grib"


def test_symlinks_are_taken_on_request() -> None:
    """``acquisition.useSymlink`` lets symlinked files through."""
    options = parse_options({"acquisition.useSymlink": "yes"})
    found = select([entry("l.grib", is_symlink=True)], listing("/in"), options, "d", NOW)
    assert [c.name for c in found] == ["l.grib"]


def test_size_and_age_filters_with_every_operator() -> None:
    """Size and age filters keep only entries passing their operator and threshold."""
    entries = [entry("small", 5), entry("big", 5000), entry("old", 50, age=timedelta(days=11))]
    cases = {
        ">>100": ["big"],
        "<<100": ["small", "old"],
        "==5": ["small"],
        "!=5": ["big", "old"],
        ">=50": ["big", "old"],
        "<=50": ["small", "old"],
    }
    for spec, names in cases.items():
        options = parse_options({"acquisition.filesize": spec})
        assert [c.name for c in select(entries, listing("/x"), options, "d", NOW)] == names, spec
    young = parse_options({"acquisition.fileage": "<10d"})
    assert [c.name for c in select(entries, listing("/x"), young, "d", NOW)] == ["small", "big"]


def test_line_options_override_host_options() -> None:
    """A listing line's ``[filesize=...]`` wins over the host's ``acquisition.filesize``."""
    spec = listing("[filesize=>>100]/x")
    options = parse_options({"acquisition.filesize": "<<100"}, spec.options)
    assert [c.name for c in select([entry("a", 5), entry("b", 500)], spec, options, "d", NOW)] == [
        "b"
    ]


def test_date_window_lists_each_day() -> None:
    """A ``$date`` window expands into one listing per day, oldest first."""
    spec = parse_directory("[datedelta=-2..0]/data/$date/{.*}")[0]
    assert [r.path for r in spec.expand(NOW)] == [
        "/data/20261125/",
        "/data/20261126/",
        "/data/20261127/",
    ]


def test_target_and_metadata_templates() -> None:
    """``acquisition.target`` substrings and metadata tokens are rendered per file."""
    options = parse_options(
        {
            "acquisition.target": "$destination/$target[2..6]",
            "acquisition.metadata": "orig=$original,n=$name",
        }
    )
    found = select([entry("abcdefgh.bin")], listing("/in"), options, "dst", NOW)
    assert found[0].target == "dst/cdef"
    assert found[0].metadata == {"orig": "/in/abcdefgh.bin", "n": "abcdefgh.bin"}


def test_requeue_rules() -> None:
    """Each requeue rule says when an acquired file counts as rewritten."""
    later = T0 + timedelta(minutes=1)
    assert rewritten(10, T0, 20, later, RequeueRule.UPDATE)
    assert not rewritten(10, T0, 10, later, RequeueRule.UPDATE)
    assert not rewritten(10, T0, 20, T0, RequeueRule.UPDATE)
    assert rewritten(10, T0, 10, later, RequeueRule.SAME_SIZE)
    assert not rewritten(10, later, 10, T0, RequeueRule.SAME_SIZE)
    assert rewritten(10, later, 10, T0, RequeueRule.NAME_AND_TIME)
    assert not rewritten(10, T0, 99, later, RequeueRule.NEVER)
    assert parse_options({"acquisition.requeueonsamesize": "yes"}).requeue is RequeueRule.SAME_SIZE
    # a same-size rewrite with a newer time is taken by default; the old rule on request
    assert parse_options({}).requeue is RequeueRule.SAME_SIZE
    assert parse_options({"acquisition.requeueonsamesize": "no"}).requeue is RequeueRule.UPDATE
    assert parse_options({"acquisition.requeueonupdate": "no"}).requeue is RequeueRule.NEVER
    assert (
        parse_options({"acquisition.uniqueByNameAndTime": "yes"}).requeue
        is RequeueRule.NAME_AND_TIME
    )


def _discovered(size: int, mtime: datetime, at: datetime, reason=DiscoveryReason.NEW):  # type: ignore[no-untyped-def]
    return FileDiscovered(
        envelope=env(at), host_id="h", destination="d", path="/in/a", name="a",
        size=size, modified_at=mtime, reason=reason, target="a",
    )  # fmt: skip


def test_state_dedup_and_requeue_from_events() -> None:
    """Given a discovery and its success, the same listing is not new; a rewrite is."""
    state = AcquisitionState()
    options = parse_options({})
    c = Candidate("/in/a", "a", 10, T0, "a")
    assert decide(state.get("d", "a"), c, options) is DiscoveryReason.NEW
    state.apply(_discovered(10, T0, NOW))
    state.apply(
        RetrievalSucceeded(
            envelope=env(NOW + timedelta(seconds=1)), host_id="h", destination="d",
            path="/in/a", data_file_id="f1", size=10, duration_ms=1,
        )
    )  # fmt: skip
    known = state.get("d", "a")
    assert known is not None
    assert known.status is Status.ACQUIRED
    assert decide(known, c, options) is None
    newer = Candidate("/in/a", "a", 12, T0 + timedelta(minutes=5), "a")
    assert decide(known, newer, options) is DiscoveryReason.REWRITTEN


def test_retriable_failure_is_retried_and_stale_events_ignored() -> None:
    """A retriable failure is tried again; an older event read back late changes nothing."""
    state = AcquisitionState()
    first = _discovered(10, T0, NOW)
    state.apply(first)
    failed = RetrievalFailed(
        envelope=env(NOW + timedelta(seconds=1)), host_id="h", destination="d", path="/in/a",
        error_class="SizeMismatch", message="short", retriable=True, duration_ms=1,
    )  # fmt: skip
    state.apply(failed)
    state.apply(first)  # the log gives back an event already applied
    known = state.get("d", "a")
    assert known is not None
    assert known.status is Status.FAILED
    c = Candidate("/in/a", "a", 10, T0, "a")
    assert decide(known, c, parse_options({})) is DiscoveryReason.NEW
    permanent = RetrievalFailed(
        envelope=env(NOW + timedelta(seconds=2)), host_id="h", destination="d", path="/in/a",
        error_class="NotFound", message="gone", retriable=False, duration_ms=1,
    )  # fmt: skip
    state.apply(permanent)
    known = state.get("d", "a")
    assert known is not None
    assert decide(known, c, parse_options({})) is None
    assert decide(known, c, parse_options({"acquisition.requeueOnFailure": "yes"})) is not None


def test_stored_file_closes_an_attempt_whose_outcome_was_lost() -> None:
    """A DataFileStored of an acquisition registration marks its pending key acquired."""
    state = AcquisitionState()
    state.apply(_discovered(10, T0, NOW))
    state.apply(
        DataFileRegistered(
            envelope=env(), data_file_id="f9", destination="d", target="a",
            transfer_group="g", expiry_time=NOW + timedelta(days=1), requested_by=requester("h"),
        )
    )  # fmt: skip
    state.apply(
        DataFileStored(
            envelope=env(), data_file_id="f9", guid="f9", store="s", location="f9", size=10,
            checksums=Checksums(adler32="1"), duration_ms=1,
        )
    )  # fmt: skip
    known = state.get("d", "a")
    assert known is not None
    assert known.status is Status.ACQUIRED
    assert known.data_file_id == "f9"


def test_jobs_and_locations_from_configuration() -> None:
    """Active acquisition hosts of active destinations are polled at their period; MQTT hosts
    are subscribed instead; a host's address and options become the module's location."""
    from bus.config.view import ConfigView
    from bus.events.config import Association, Destination, DestinationType, Host, HostType
    from producers.acquisition.hosts import jobs_of
    from protocols.location import location_for

    def host(name: str, **kw: object) -> Host:
        return Host(
            id=name, nickname=name, type=HostType.ACQUISITION, protocol="sftp",
            address="h.example:2222/base", **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    hosts = {
        "a": host("a", polling_frequency_ms=5000, options={"sftp.fingerPrint": "X"}),
        "off": host("off", active=False),
        "mq": host("mq", options={"http.mqttMode": "yes"}),
        "dis": Host(id="dis", nickname="dis", type=HostType.DISSEMINATION, protocol="file",
                    address="x"),
    }  # fmt: skip
    view = ConfigView(
        destinations={
            "d": Destination(name="d", type=DestinationType.ACQUISITION, transfer_group="g"),
            "stopped": Destination(
                name="stopped", type=DestinationType.ACQUISITION, transfer_group="g", active=False
            ),
        },
        hosts=hosts,
        associations={
            (d, h): Association(destination=d, host=h)
            for d, h in (("d", "a"), ("stopped", "a"), ("d", "off"), ("d", "mq"), ("d", "dis"))
        },
    )
    assert jobs_of(view) == {("a", "d"): 5000}
    assert list(jobs_of(view, mqtt=True)) == [("mq", "d")]
    location = location_for(hosts["a"], "pw")
    assert (location.scheme, location.host, location.port, location.path) == (
        "sftp",
        "h.example",
        2222,
        "/base",
    )
    assert location.options == {"fingerPrint": "X"}
    assert location.password == "pw"


def test_stable_is_the_default_and_other_rules_vouch_without_waiting() -> None:
    """Files must be seen stable unless a companion, a minimum age or ``stable=no`` vouches."""
    default = parse_options({})
    assert (default.stable, default.stable_interval_ms) == (True, DEFAULT_STABLE_INTERVAL_MS)
    assert vouched(default) is None
    assert parse_options({"acquisition.stableInterval": "30s"}).stable_interval_ms == 30_000
    assert vouched(parse_options({"acquisition.companion": ".done"})) is Completeness.COMPANION
    assert vouched(parse_options({"acquisition.fileage": ">=2m"})) is Completeness.AGE
    assert vouched(parse_options({"acquisition.fileage": "<10d"})) is None  # an upper bound
    assert vouched(parse_options({"acquisition.stable": "no"})) is Completeness.LISTED


def test_companion_names() -> None:
    """``$name`` is replaced by the file's name; anything else is appended to it."""
    assert companion_of(parse_options({"acquisition.companion": ".done"}), "a.grib") == (
        "a.grib.done"
    )
    spec = parse_options({"acquisition.companion": "ready/$name.ok"})
    assert companion_of(spec, "a.grib") == "ready/a.grib.ok"
    assert companion_of(parse_options({}), "a.grib") is None


def test_a_file_is_offered_only_once_its_companion_is_listed() -> None:
    """Without its companion a file is held back (counted), with it the file is offered."""
    options = parse_options({"acquisition.companion": ".done"})
    line = listing("/in/{.*\\.grib}")
    without = discover([entry("a.grib")], line, options, "d", NOW, lambda _: None, ())
    assert (without.matched, without.new, without.awaiting_companion) == (1, [], 1)
    both = discover(
        [entry("a.grib"), entry("a.grib.done", 0)], line, options, "d", NOW, lambda _: None, ()
    )
    assert [(c.name, r) for c, r, _ in both.new] == [("a.grib", DiscoveryReason.NEW)]


def test_sightings_need_the_same_size_and_time_for_the_whole_interval() -> None:
    """A first sighting waits the interval; a change starts it again; unchanged, it is due."""
    seen = Sightings()
    key = ("h", "d", "a")
    assert seen.stable_in(key, entry("a", 10), 100.0, 5.0) == 5.0
    assert seen.stable_in(key, entry("a", 10), 103.0, 5.0) == 2.0
    assert seen.stable_in(key, entry("a", 20), 104.0, 5.0) == 5.0  # it grew: from the start
    assert seen.stable_in(key, entry("a", 20), 109.0, 5.0) == 0.0
    seen.keep(("h", "d"), {("h", "d", "b")})
    assert key not in seen.seen  # no longer offered: forgotten


def test_a_rounded_down_time_proves_a_rewrite_only_past_the_recorded_minute() -> None:
    """A minute-precision time later than the recorded minute is a rewrite; within it only
    the exact time can tell; a midnight stands for its whole day (``ls`` of old files)."""
    recorded = datetime(2026, 11, 27, 11, 0, 10, tzinfo=UTC)
    minute = recorded.replace(second=0)
    same = RequeueRule.SAME_SIZE
    assert rewritten(10, recorded, 10, minute, same, exact=False) is None
    assert rewritten(10, recorded, 10, minute + timedelta(minutes=1), same, exact=False)
    assert rewritten(10, recorded, 10, minute - timedelta(minutes=1), same, exact=False) is False
    assert rewritten(10, recorded, 10, minute, RequeueRule.UPDATE, exact=False) is False
    assert rewritten(10, recorded, 10, minute, same) is False  # taken as exact: older
    midnight = recorded.replace(hour=0, minute=0, second=0)
    assert rewritten(10, recorded, 10, midnight, same, exact=False) is None
    assert same_time(minute, recorded, exact=False)
    assert not same_time(minute, recorded)


def test_an_ambiguous_acquired_file_is_handed_back_for_its_exact_time() -> None:
    """A file acquired within the minute a LIST shows is neither new nor skipped silently:
    ``discover`` returns it as unsure; its exact time then decides."""
    recorded = datetime(2026, 11, 27, 11, 0, 10, tzinfo=UTC)
    known = Known(
        host_id="h", path="/in/a", size=10, mtime=recorded, status=Status.ACQUIRED,
        acquired_size=10, acquired_mtime=recorded,
    )  # fmt: skip
    coarse = Entry("a", 10, recorded.replace(second=0), exact_time=False)
    found = discover([coarse], listing("/in"), parse_options({}), "d", NOW, lambda _: known, ())
    assert (found.new, found.unsure) == ([], [(coarse, known)])
    options = parse_options({})
    later = recorded + timedelta(seconds=30)
    assert reason_for(known, 10, later, options) is DiscoveryReason.REWRITTEN
    assert reason_for(known, 10, recorded, options) is None
    margin = timedelta(seconds=60)
    assert not settled(recorded, recorded + timedelta(seconds=40), margin)
    assert settled(recorded, recorded.replace(second=0) + timedelta(minutes=2), margin)
