"""The janitor's pure core: given these events, when a sweep runs at this time, then these
expiries and deletions (ECPDS-REFERENCE.md §6.4)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from bus.events import Event
from bus.events.base import TransferStatus
from bus.events.config import DeleteFromSpool, Destination
from bus.events.datafiles import DataFileExpired, DataFileReplicated
from bus.events.transfers import TransferExpired, TransferLifetimeExtended
from consumers.janitor import core
from tests.config.factories import destination
from tests.janitor.factories import (
    LIFETIME,
    T0,
    env,
    held,
    queued,
    registered,
    scheduled,
    started,
    stopped,
    stored,
    succeeded,
)

BEFORE = T0 + timedelta(minutes=30)
AFTER = T0 + LIFETIME + timedelta(minutes=1)
S = TransferStatus


def config(**policies: DeleteFromSpool) -> Mapping[str, Destination]:
    return {
        name.replace("_", "-"): destination(name.replace("_", "-"), delete_from_spool=policy)
        for name, policy in policies.items()
    }


ON_EXPIRY = config(site_a=DeleteFromSpool.ON_EXPIRATION, site_b=DeleteFromSpool.ON_EXPIRATION)
ON_SUCCESS = config(site_a=DeleteFromSpool.ON_SUCCESS, site_b=DeleteFromSpool.ON_SUCCESS)


def given(*events: Event) -> core.JanitorState:
    state = core.JanitorState()
    for event in events:
        core.evolve(state, event)
    return state


def when_swept(
    state: core.JanitorState, at: datetime, destinations: Mapping[str, Destination] = ON_EXPIRY
) -> core.SweepPlan:
    return core.sweep(state, at, destinations)


def delivered(dfid: str, *destinations: str) -> list[Event]:
    events: list[Event] = [registered(dfid), stored(dfid)]
    for name in destinations:
        events += [queued(dfid, name), scheduled(dfid, name), started(dfid, name)]
        events.append(succeeded(dfid, name))
    return events


def kinds(plan: core.SweepPlan) -> list[str]:
    return [type(e).__name__ for e in plan.events] + [f"delete:{d.reason}" for d in plan.deletions]


def test_a_queued_transfer_past_expiry_is_left_to_the_scheduler() -> None:
    """A WAIT transfer past its expiry is live: no expiry by the janitor and no deletion."""
    state = given(registered("f1"), stored("f1"), queued("f1"))
    assert kinds(when_swept(state, AFTER)) == []


def test_a_running_transfer_keeps_the_content_after_expiry() -> None:
    """An EXEC transfer past expiry still reads the object: nothing is expired or deleted."""
    state = given(registered("f1"), stored("f1"), queued("f1"), started("f1"))
    assert kinds(when_swept(state, AFTER, ON_SUCCESS)) == []


def test_delivered_file_is_expired_then_deleted_on_expiration() -> None:
    """Delivered everywhere and past its lifetime: DataFileExpired, then delete on expiration."""
    plan = when_swept(given(*delivered("f1", "site-a", "site-b")), AFTER)
    assert kinds(plan) == ["DataFileExpired", "delete:on-expiration"]
    (expired,) = plan.events
    assert isinstance(expired, DataFileExpired)
    assert expired.expiry_time == T0 + LIFETIME
    assert plan.deletions[0].copy == core.StoredCopy("f1", "file:///store", "f1")


def test_delete_on_expiration_keeps_delivered_content_until_expiry() -> None:
    """With "on expiration", a file delivered everywhere is kept until its lifetime ends."""
    assert kinds(when_swept(given(*delivered("f1", "site-a")), BEFORE)) == []


def test_delete_on_success_deletes_as_soon_as_every_transfer_is_done() -> None:
    """With "on success", content goes once all transfers are DONE, before expiry, unexpired."""
    plan = when_swept(given(*delivered("f1", "site-a", "site-b")), BEFORE, ON_SUCCESS)
    assert kinds(plan) == ["delete:on-success"]


def test_delete_on_success_lets_sibling_transfers_arrive_first() -> None:
    """Right after the last success the file is kept for the settle period, then deleted."""
    state = given(*delivered("f1", "site-a"))  # succeeded at T0
    assert kinds(when_swept(state, T0 + core.SETTLE / 2, ON_SUCCESS)) == []
    assert kinds(when_swept(state, T0 + core.SETTLE, ON_SUCCESS)) == ["delete:on-success"]


def test_delete_on_success_waits_for_every_transfer() -> None:
    """One transfer still queued (a live reference) keeps the content, whatever the policy."""
    state = given(*delivered("f1", "site-a"), queued("f1", "site-b"))
    assert kinds(when_swept(state, BEFORE, ON_SUCCESS)) == []


def test_a_stopped_transfer_counts_as_finished_for_delete_on_success() -> None:
    """A STOP transfer is a dead reference: DONE plus STOP is enough to delete on success."""
    state = given(*delivered("f1", "site-a"), queued("f1", "site-b"), stopped("f1", "site-b"))
    assert kinds(when_swept(state, BEFORE, ON_SUCCESS)) == ["delete:on-success"]


def test_one_on_expiration_destination_keeps_the_file_to_expiry() -> None:
    """Shared by an "on success" and an "on expiration" destination: kept until expiry."""
    mixed = config(site_a=DeleteFromSpool.ON_SUCCESS, site_b=DeleteFromSpool.ON_EXPIRATION)
    state = given(*delivered("f1", "site-a", "site-b"))
    assert kinds(when_swept(state, BEFORE, mixed)) == []
    assert kinds(when_swept(state, AFTER, mixed)) == ["DataFileExpired", "delete:on-expiration"]


def test_unknown_destination_defaults_to_delete_on_expiration() -> None:
    """A destination missing from the configuration keeps its content until expiry."""
    assert kinds(when_swept(given(*delivered("f1", "site-a")), BEFORE, {})) == []


def test_a_file_whose_transfers_are_not_known_yet_is_not_deleted_on_success() -> None:
    """Stored but no transfer seen yet: "on success" has nothing to go by, the file stays."""
    state = given(registered("f1"), stored("f1"))
    assert kinds(when_swept(state, BEFORE, ON_SUCCESS)) == []


def test_held_transfer_past_expiry_is_expired_by_the_janitor() -> None:
    """A HOLD transfer past expiry fails "not transferred before expiration"; the file goes."""
    state = given(registered("f1"), stored("f1"), queued("f1", status=S.HOLD))
    plan = when_swept(state, AFTER)
    assert kinds(plan) == ["TransferExpired", "DataFileExpired", "delete:on-expiration"]
    expired = plan.events[0]
    assert isinstance(expired, TransferExpired)
    assert expired.transfer_id == "f1-site-a"
    assert expired.reason == "not transferred before expiration"
    assert expired.envelope.correlation_id == "f1"


def test_held_transfer_put_on_hold_later_is_expired_too() -> None:
    """A transfer the operator put on standby after queueing is the janitor's to expire."""
    state = given(registered("f1"), stored("f1"), queued("f1"), held("f1"))
    assert kinds(when_swept(state, AFTER))[0] == "TransferExpired"


def test_held_transfer_before_expiry_is_a_live_reference() -> None:
    """A HOLD transfer not yet expired (a portal file waiting for download) keeps the file."""
    state = given(registered("f1"), stored("f1"), queued("f1", status=S.HOLD))
    assert kinds(when_swept(state, BEFORE, ON_SUCCESS)) == []


def test_lifetime_extension_keeps_a_held_file() -> None:
    """Extending a transfer's lifetime moves its expiry and the file's past the old one."""
    extended = TransferLifetimeExtended(
        envelope=env("f1"),
        transfer_id="f1-site-a",
        destination="site-a",
        old_expiry_time=T0 + LIFETIME,
        new_expiry_time=AFTER + timedelta(hours=1),
    )
    state = given(registered("f1"), stored("f1"), queued("f1", status=S.HOLD), extended)
    assert kinds(when_swept(state, AFTER)) == []


def test_success_of_a_superseded_attempt_does_not_free_the_content() -> None:
    """A slow mover's success for attempt 1 while attempt 2 runs leaves the transfer live."""
    state = given(
        registered("f1"),
        stored("f1"),
        queued("f1"),
        scheduled("f1", attempt=2),
        succeeded("f1", attempt=1),
    )
    assert kinds(when_swept(state, BEFORE, ON_SUCCESS)) == []


def test_nothing_stored_is_only_expired_then_forgotten() -> None:
    """A registration whose bytes never arrived expires without a deletion and is dropped."""
    state = given(registered("f1"))
    plan = when_swept(state, AFTER)
    assert kinds(plan) == ["DataFileExpired"]
    for event in plan.events:
        core.evolve(state, event)
    assert state.files == {}
    assert state.finished == {"f1"}


def test_a_resweep_after_the_effects_decides_nothing() -> None:
    """Once its events are folded back (even twice), a second sweep has nothing left to do."""
    state = given(registered("f1"), stored("f1"), queued("f1", status=S.HOLD))
    plan = when_swept(state, AFTER)
    effects: list[Event] = [*plan.events, *(core.deleted(d, AFTER) for d in plan.deletions)]
    for event in effects + effects:
        core.evolve(state, event)
    assert kinds(when_swept(state, AFTER)) == []
    assert "f1" in state.finished
    assert "f1" not in state.files
    core.evolve(state, succeeded("f1"))  # a late event about a finished file changes nothing
    assert "f1" not in state.files


def test_restart_between_delete_and_record_rederives_the_same_event() -> None:
    """Replayed without its DataFileDeleted, a file is deleted again with the same event id."""
    history = delivered("f1", "site-a")
    first = when_swept(given(*history), AFTER)
    replay = given(*history, *first.events)  # the expiry was published, the deletion was not
    second = when_swept(replay, AFTER + timedelta(minutes=5))
    assert kinds(second) == ["delete:on-expiration"]
    before = core.deleted(first.deletions[0], AFTER)
    after = core.deleted(second.deletions[0], AFTER + timedelta(minutes=5))
    assert before.envelope.event_id == after.envelope.event_id
    assert (
        first.events[0].envelope.event_id
        == core.sweep(given(*history), AFTER, {}).events[0].envelope.event_id
    )


def test_events_from_the_two_topics_fold_in_any_order() -> None:
    """Transfer events read before the data file events give the same decisions."""
    history = delivered("f1", "site-a")
    files = [e for e in history if type(e).__name__.startswith("DataFile")]
    transfers = [e for e in history if e not in files]
    plan = when_swept(given(*transfers, *files), AFTER)
    assert kinds(plan) == ["DataFileExpired", "delete:on-expiration"]


def replicated(dfid: str, store: str) -> DataFileReplicated:
    return DataFileReplicated(
        envelope=env(f"{dfid}-{store}"),
        data_file_id=dfid,
        guid=dfid,
        from_store="file:///store",
        to_store=store,
        location=dfid,
        size=10,
        duration_ms=1,
    )


def test_every_replica_is_deleted_with_the_stored_copy() -> None:
    """A file replicated to two other stores: expiry deletes all three copies, one per store."""
    state = given(*delivered("f1", "site-a"), replicated("f1", "archive"), replicated("f1", "dr"))
    plan = when_swept(state, AFTER)
    assert [d.copy.store for d in plan.deletions] == ["file:///store", "archive", "dr"]
    assert {d.reason for d in plan.deletions} == {"on-expiration"}


def test_a_file_is_deleted_only_once_no_copy_is_left() -> None:
    """After the stored copy's deletion is recorded, the replica is still due; once it is
    recorded too, nothing more is decided and the file is forgotten."""
    state = given(*delivered("f1", "site-a"), replicated("f1", "archive"))
    first = when_swept(state, AFTER)
    for event in first.events:
        core.evolve(state, event)
    core.evolve(state, core.deleted(first.deletions[0], AFTER))
    (left,) = when_swept(state, AFTER).deletions
    assert left.copy.store == "archive"
    core.evolve(state, core.deleted(left, AFTER))
    assert kinds(when_swept(state, AFTER)) == []
    assert "f1" in state.finished


def test_a_redelivered_replica_is_recorded_once() -> None:
    """The same DataFileReplicated twice adds one replica."""
    state = given(
        *delivered("f1", "site-a"), replicated("f1", "archive"), replicated("f1", "archive")
    )
    assert [c.store for c in state.files["f1"].copies()] == ["file:///store", "archive"]
