"""Given/when/then for ``decide``: every refusal, and the plan of an accepted submission
(aliases, standby, delay/at, priority, lifetime, requeue/force instances)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bus.config.view import ConfigView
from bus.events.base import Envelope, TransferStatus
from bus.events.config import Alias, Destination, PortalOperation
from bus.events.datafiles import (
    DataFileExpired,
    DataFileRegistered,
    DataFileRegistrationFailed,
    RefusalReason,
    SubmissionMode,
)
from bus.events.transfers import TransferQueued, TransferSucceeded, Verification
from producers.ingest.core import Accepted, Plan, Refused, Submission, decide, left_open_by
from producers.ingest.index import IngestIndex
from tests.config.factories import destination, user

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HOUR = 3_600_000


def env(correlation: str = "x") -> Envelope:
    return Envelope(event_id="e", occurred_at=NOW, source="test", correlation_id=correlation)


def view(*destinations: Destination, **kw: object) -> ConfigView:
    return ConfigView(destinations={d.name: d for d in destinations}, **kw)  # type: ignore[arg-type]


def put(**kw: object) -> Submission:
    fields: dict[str, object] = {"destination": "site-a", "target": "a/file.grib"}
    fields.update(kw)
    return Submission(**fields)  # type: ignore[arg-type]


def registered(dfid: str = "f1", instance: int = 1, **kw: object) -> DataFileRegistered:
    fields: dict[str, object] = {
        "envelope": env(dfid),
        "data_file_id": dfid,
        "destination": "site-a",
        "target": "a/file.grib",
        "transfer_group": "default",
        "expiry_time": NOW + timedelta(days=2),
        "file_instance": instance,
    }
    fields.update(kw)
    return DataFileRegistered(**fields)  # type: ignore[arg-type]


def queued(tid: str, dest: str = "site-a", dfid: str = "f1") -> TransferQueued:
    return TransferQueued(
        envelope=env(dfid),
        transfer_id=tid,
        destination=dest,
        data_file_id=dfid,
        target="t",
        status=TransferStatus.WAIT,
        priority=99,
        queue_time=NOW,
        expiry_time=NOW + timedelta(days=1),
        size=1,
    )


def accepted(decision: object) -> Plan:
    assert isinstance(decision, Accepted), decision
    return decision.plan


def refused(decision: object, reason: RefusalReason, field: str) -> Refused:
    assert isinstance(decision, Refused), decision
    assert (decision.reason, decision.field) == (reason, field)
    return decision


def test_unknown_destination_is_refused() -> None:
    """A destination that is not configured is refused, naming the destination."""
    r = refused(
        decide(put(), view(), IngestIndex(), NOW), RefusalReason.UNKNOWN_DESTINATION, "destination"
    )
    assert "site-a" in r.message


def test_inactive_destination_is_refused() -> None:
    """An inactive destination refuses submissions."""
    d = destination(active=False)
    r = refused(
        decide(put(), view(d), IngestIndex(), NOW), RefusalReason.NOT_PERMITTED, "destination"
    )
    assert "not active" in r.message


def test_data_user_without_put_permission_is_refused() -> None:
    """A data user allowed on the destination but without the put operation is refused."""
    u = user("alice", destinations=("site-a",), operations=(PortalOperation.GET,))
    decision = decide(
        put(user="alice"), view(destination(), users={"alice": u}), IngestIndex(), NOW
    )
    refused(decision, RefusalReason.NOT_PERMITTED, "destination")


def test_data_user_not_associated_with_destination_is_refused() -> None:
    """A data user with put on another destination may not put on this one."""
    u = user("alice", destinations=("site-b",), operations=(PortalOperation.PUT,))
    decision = decide(
        put(user="alice"), view(destination(), users={"alice": u}), IngestIndex(), NOW
    )
    refused(decision, RefusalReason.NOT_PERMITTED, "destination")


def test_data_user_with_put_on_destination_is_accepted() -> None:
    """A data user with put on the destination is accepted."""
    u = user("alice", destinations=("site-a",), operations=(PortalOperation.PUT,))
    accepted(decide(put(user="alice"), view(destination(), users={"alice": u}), IngestIndex(), NOW))


def test_more_pending_than_max_pending_is_refused() -> None:
    """With max_pending transfers not finished, the next submission is refused."""
    index = IngestIndex()
    index.apply_all([queued("t1"), queued("t2")])
    d = destination(max_pending=2)
    refused(decide(put(), view(d), index, NOW), RefusalReason.TOO_MANY_PENDING, "destination")


def test_finished_transfers_no_longer_count_as_pending() -> None:
    """A delivered transfer frees its place under max_pending."""
    index = IngestIndex()
    done = TransferSucceeded(
        envelope=env(), transfer_id="t1", destination="site-a", attempt=1, host_id="h",
        mover_id="m", remote_path="/x", bytes_sent=1, duration_ms=1, bytes_per_second=1.0,
        verification=Verification.SIZE,
    )  # fmt: skip
    index.apply_all([queued("t1"), queued("t2"), done])
    assert index.pending("site-a") == 1
    accepted(decide(put(), view(destination(max_pending=2)), index, NOW))


def test_larger_than_max_file_size_is_refused() -> None:
    """A file whose announced size exceeds max_file_size is refused before any byte is read."""
    d = destination(max_file_size=100)
    r = refused(decide(put(size=101), view(d), IngestIndex(), NOW), RefusalReason.TOO_LARGE, "size")
    assert "101" in r.message
    assert accepted(decide(put(size=100), view(d), IngestIndex(), NOW)).max_file_size == 100


def test_negative_max_file_size_means_no_limit() -> None:
    """max_file_size -1 (OpenECPDS's 'no limit') accepts any size."""
    plan = accepted(
        decide(put(size=10**12), view(destination(max_file_size=-1)), IngestIndex(), NOW)
    )
    assert plan.max_file_size is None


def test_delay_beyond_lifetime_is_refused_as_already_expired() -> None:
    """A delay that reaches past the file's expiry is refused as already expired."""
    decision = decide(
        put(lifetime_ms=HOUR, delay_ms=2 * HOUR), view(destination()), IngestIndex(), NOW
    )
    refused(decision, RefusalReason.ALREADY_EXPIRED, "delay")


def test_at_beyond_lifetime_is_refused_as_already_expired() -> None:
    """An --at time after the file's expiry is refused as already expired."""
    at = NOW + timedelta(days=3)  # default lifetime 2 days
    refused(
        decide(put(at=at), view(destination()), IngestIndex(), NOW),
        RefusalReason.ALREADY_EXPIRED,
        "at",
    )


def test_zero_lifetime_is_refused_as_already_expired() -> None:
    """A lifetime of zero would expire the file at once."""
    refused(
        decide(put(lifetime_ms=0), view(destination()), IngestIndex(), NOW),
        RefusalReason.ALREADY_EXPIRED,
        "lifetime",
    )


def test_duplicate_is_refused() -> None:
    """A second put of the same (destination, target, version) is refused as a duplicate."""
    index = IngestIndex()
    index.apply(registered())
    r = refused(decide(put(), view(destination()), index, NOW), RefusalReason.DUPLICATE, "target")
    assert "Duplicate DataFile found" in r.message


def test_other_version_is_not_a_duplicate() -> None:
    """Another version of the same target is a different file."""
    index = IngestIndex()
    index.apply(registered(version="1"))
    assert accepted(decide(put(version="2"), view(destination()), index, NOW)).file_instance == 1


@pytest.mark.parametrize("mode", [SubmissionMode.REQUEUE, SubmissionMode.FORCE])
def test_requeue_or_force_makes_the_next_instance(mode: SubmissionMode) -> None:
    """--requeue or --force accept a duplicate as a new file instance (previous + 1)."""
    index = IngestIndex()
    index.apply_all([registered("f1", 1), registered("f2", 2, submission_mode=mode)])
    assert accepted(decide(put(mode=mode), view(destination()), index, NOW)).file_instance == 3


def test_failed_registration_frees_its_key() -> None:
    """After a registration failed (no bytes stored), the same put is accepted again."""
    index = IngestIndex()
    failed = DataFileRegistrationFailed(
        envelope=env(), data_file_id="f1", stage="recovery", error_class="X", message="m"
    )
    index.apply_all([registered("f1"), failed])
    assert accepted(decide(put(), view(destination()), index, NOW)).file_instance == 2


def test_expired_file_frees_its_key() -> None:
    """Once a file has expired, the same target may be put again without --force."""
    index = IngestIndex()
    index.apply_all(
        [registered("f1"), DataFileExpired(envelope=env(), data_file_id="f1", expiry_time=NOW)]
    )
    accepted(decide(put(), view(destination()), index, NOW))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"priority": 100}, "priority"),
        ({"priority": -1}, "priority"),
        ({"target": "/abs/path"}, "target"),
        ({"target": "a/../b"}, "target"),
        ({"target": ""}, "target"),
        ({"delay_ms": 1, "at": NOW}, "delay"),
        ({"metadata": {"x" * 26: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 256}}, "metadata"),
        ({"at": datetime(2026, 11, 27, 13, 0)}, "at"),
    ],
)
def test_invalid_options_are_refused(changes: dict[str, object], field: str) -> None:
    """Options no configuration could make valid are refused as INVALID, naming the option."""
    refused(
        decide(put(**changes), view(destination()), IngestIndex(), NOW),
        RefusalReason.INVALID,
        field,
    )


def test_plan_defaults() -> None:
    """By default: priority 99, queued now, expiry now + the destination's lifetime, WAIT."""
    d = destination(default_lifetime_ms=HOUR, transfer_group="europe")
    plan = accepted(decide(put(), view(d), IngestIndex(), NOW))
    assert (plan.priority, plan.queue_time, plan.scheduled_time) == (99, NOW, None)
    assert plan.expiry_time == NOW + timedelta(hours=1)
    assert plan.transfer_group == "europe"
    assert plan.identity == "a/file.grib"
    assert [(t.destination, t.status, t.alias_of) for t in plan.transfers] == [
        ("site-a", TransferStatus.WAIT, None)
    ]


def test_priority_lifetime_delay_and_identity_are_carried() -> None:
    """Priority, lifetime, delay and identity given by the producer shape the plan."""
    s = put(priority=5, lifetime_ms=10 * HOUR, delay_ms=HOUR, identity="daily")
    plan = accepted(decide(s, view(destination()), IngestIndex(), NOW))
    assert plan.priority == 5
    assert plan.expiry_time == NOW + timedelta(hours=10)
    assert plan.scheduled_time == plan.queue_time == NOW + timedelta(hours=1)
    assert plan.identity == "daily"


def test_at_sets_the_queue_time() -> None:
    """--at queues the transfers at that time."""
    at = NOW + timedelta(hours=3)
    plan = accepted(decide(put(at=at), view(destination()), IngestIndex(), NOW))
    assert plan.scheduled_time == plan.queue_time == at


def test_standby_submission_is_held() -> None:
    """--standby queues every transfer in HOLD."""
    plan = accepted(decide(put(standby=True), view(destination()), IngestIndex(), NOW))
    assert [t.status for t in plan.transfers] == [TransferStatus.HOLD]


def test_aliases_are_followed_recursively_with_patterns_and_standby() -> None:
    """Aliases are followed recursively; a pattern not matching the target, an unknown and an
    inactive alias are skipped; a destination on standby gets its transfer in HOLD."""
    a = destination(
        "site-a",
        aliases=(
            Alias(destination="site-b"),
            Alias(destination="site-x", pattern=r"\.bufr$"),
            Alias(destination="ghost"),
            Alias(destination="site-off"),
        ),
    )
    b = destination(
        "site-b",
        aliases=(Alias(destination="site-c", pattern=r"\.grib$"), Alias(destination="site-a")),
    )
    c = destination("site-c", standby=True)
    x = destination("site-x")
    off = destination("site-off", active=False)
    plan = accepted(decide(put(), view(a, b, c, x, off), IngestIndex(), NOW))
    assert [(t.destination, t.status, t.alias_of) for t in plan.transfers] == [
        ("site-a", TransferStatus.WAIT, None),
        ("site-b", TransferStatus.WAIT, "site-a"),
        ("site-c", TransferStatus.HOLD, "site-a"),
    ]


def test_decide_is_pure() -> None:
    """The same inputs give the same decision, and the index is left as it was."""
    index = IngestIndex()
    index.apply(registered("f1", version="1"))
    before = (dict(index.files), index.pending("site-a"))
    d = view(destination())
    assert decide(put(), d, index, NOW) == decide(put(), d, index, NOW)
    assert before == (dict(index.files), index.pending("site-a"))


def test_destination_standby_holds_its_transfer() -> None:
    """A destination configured on standby gets its transfers in HOLD."""
    plan = accepted(decide(put(), view(replace(destination(), standby=True)), IngestIndex(), NOW))
    assert plan.transfers[0].status is TransferStatus.HOLD


def test_transfer_read_before_its_registration_is_still_linked() -> None:
    """A rebuild reading the transfers topic ahead of the datafiles topic still links the
    transfer to its file (so recovery does not queue it a second time)."""
    index = IngestIndex()
    index.apply(queued("t1", dfid="f1"))
    index.apply(registered("f1"))
    assert [t.transfer_id for t in index.transfers_of("f1")] == ["t1"]


def test_registrations_in_flight_count_as_pending() -> None:
    """A registration whose bytes are still streaming counts against max_pending, so
    concurrent puts cannot overshoot it; once it failed it no longer counts."""
    index = IngestIndex()
    index.apply(registered("f1"))
    d = view(destination(max_pending=1))
    refused(
        decide(put(target="other"), d, index, NOW), RefusalReason.TOO_MANY_PENDING, "destination"
    )
    failed = DataFileRegistrationFailed(
        envelope=env(), data_file_id="f1", stage="receive", error_class="X", message="m"
    )
    index.apply(failed)
    index.apply(failed)  # a redelivered event changes nothing
    assert index.pending("site-a") == 0
    accepted(decide(put(target="other"), d, index, NOW))


def test_a_named_api_recovers_only_the_registrations_it_left_open() -> None:
    """With ECPDS_INSTANCE set, an API's restart closes its own open registrations and never
    another API's (their uploads may be in flight); an unnamed API, which cannot recognise its
    own after a restart, closes every API's; acquisition's and the portal's are never its."""
    mine = registered(envelope=replace(env("f1"), source="ingest/api-1"))
    theirs = registered(envelope=replace(env("f2"), source="ingest/api-2"))
    portal = registered(requested_by="portal/site-x")
    acquired = registered(requested_by="acquisition/host-a")
    assert [left_open_by(r, "ingest/api-1", named=True) for r in (mine, theirs)] == [True, False]
    assert [left_open_by(r, "ingest/h-7", named=False) for r in (mine, theirs)] == [True, True]
    for named in (True, False):
        assert not left_open_by(portal, "test", named)
        assert not left_open_by(acquired, "test", named)
