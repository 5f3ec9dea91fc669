"""The replicator's pure planning: which stores get a copy, in what order, and the events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bus.config.view import ConfigView
from bus.events.base import Envelope
from bus.events.datafiles import Checksums, DataFileStored
from consumers.replicator import core
from tests.config import factories as f

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PRIMARY = "file:///var/store"


def stored(dfid: str = "a" * 32, store: str = PRIMARY) -> DataFileStored:
    return DataFileStored(
        envelope=Envelope(
            event_id=str(uuid.uuid4()), occurred_at=T0, source="test", correlation_id=dfid
        ),
        data_file_id=dfid,
        guid=dfid,
        store=store,
        location=dfid,
        size=42,
        checksums=Checksums(adler32="0a0b0c0d"),
        duration_ms=1,
    )


def view(**group: object) -> ConfigView:
    fields: dict[str, object] = {"stores": ("disk", "mirror", "cloud"), "replicate": True}
    fields.update(group)
    return ConfigView(
        destinations={"site-a": f.destination("site-a", transfer_group="eu")},
        transfer_groups={"eu": f.group("eu", **fields)},
    )


def in_disk(name: str) -> bool:
    """The object is in the store the group calls ``disk``."""
    return name == "disk"


def test_copies_go_to_every_store_after_the_one_the_object_is_in() -> None:
    """With min_replication_count 0, every store listed after the object's store is wanted."""
    job = core.plan(stored(), "eu", view(), in_disk)
    assert isinstance(job, core.ReplicationJob)
    assert job.candidates == ("mirror", "cloud")
    assert job.wanted == 2
    assert (job.source, job.size, job.adler32) == (PRIMARY, 42, "0a0b0c0d")
    assert core.next_targets(job, set(), set()) == ("mirror", "cloud")


def test_an_object_in_a_secondary_store_is_copied_only_further_down_the_list() -> None:
    """An object already in the second store is copied to the stores after it only."""
    job = core.plan(stored(), "eu", view(), lambda name: name == "mirror")
    assert isinstance(job, core.ReplicationJob)
    assert job.candidates == ("cloud",)


def test_an_object_outside_the_list_is_copied_to_every_listed_store() -> None:
    """An object in a store the group does not name gets a copy in each of the group's stores."""
    job = core.plan(stored(), "eu", view(), lambda name: False)
    assert isinstance(job, core.ReplicationJob)
    assert job.candidates == ("disk", "mirror", "cloud")


def test_min_replication_count_limits_copies_and_failures_fall_through_to_the_next_store() -> None:
    """min_replication_count=1 copies to the first candidate; if it fails, the next one."""
    job = core.plan(stored(), "eu", view(min_replication_count=1), in_disk)
    assert isinstance(job, core.ReplicationJob)
    assert job.wanted == 1
    assert core.next_targets(job, set(), set()) == ("mirror",)
    assert core.next_targets(job, set(), {"mirror"}) == ("cloud",)
    assert core.next_targets(job, {"cloud"}, {"mirror"}) == ()
    assert core.next_targets(job, set(), {"mirror", "cloud"}) == ()


def test_min_replication_count_above_the_candidates_wants_all_of_them() -> None:
    """A count larger than the stores available asks for one copy in each."""
    job = core.plan(stored(), "eu", view(min_replication_count=5), in_disk)
    assert isinstance(job, core.ReplicationJob)
    assert job.wanted == 2


def test_stores_known_to_hold_a_copy_count_as_done() -> None:
    """A store that already has a copy is not copied to again; a fully replicated file skips."""
    partly = core.plan(stored(), "eu", view(), in_disk, already={"mirror"})
    assert isinstance(partly, core.ReplicationJob)
    assert partly.done == ("mirror",)
    assert core.next_targets(partly, set(partly.done), set()) == ("cloud",)
    full = core.plan(stored(), "eu", view(), in_disk, already={"mirror", "cloud"})
    assert isinstance(full, core.Skip)
    assert "already replicated" in full.reason


def test_groups_that_do_not_replicate_are_skipped_with_the_reason() -> None:
    """No replicate flag, an inactive or unknown group, or no store after the object: a skip."""
    cases = [
        (core.plan(stored(), "eu", view(replicate=False), in_disk), "does not replicate"),
        (core.plan(stored(), "eu", view(active=False), in_disk), "not active"),
        (core.plan(stored(), "nowhere", view(), in_disk), "unknown transfer group"),
        (core.plan(stored(), None, view(), in_disk), "no known transfer group"),
        (core.plan(stored(), "eu", view(), lambda n: n == "cloud"), "no store after"),
    ]
    for decision, reason in cases:
        assert isinstance(decision, core.Skip)
        assert reason in decision.reason


def test_transfer_group_found_from_the_object_name_and_destination() -> None:
    """An object named <destination>/<target> leads to the destination's transfer group."""
    assert core.destination_of("site-a/dir/file.bin") == "site-a"
    assert core.group_of("site-a", view()) == "eu"
    assert core.group_of("unknown", view()) is None
    assert core.replicating(view())
    assert not core.replicating(view(replicate=False))


def test_replicated_event_is_deterministic_per_file_and_store() -> None:
    """The same copy recorded twice carries the same event id; another store another id."""
    job = core.plan(stored(), "eu", view(), in_disk)
    assert isinstance(job, core.ReplicationJob)
    one = core.replicated(job, "mirror", 5, T0, "replicator/test")
    again = core.replicated(job, "mirror", 9, T0, "replicator/test")
    other = core.replicated(job, "cloud", 5, T0, "replicator/test")
    assert one.envelope.event_id == again.envelope.event_id != other.envelope.event_id
    assert (one.from_store, one.to_store, one.location, one.size) == (
        PRIMARY,
        "mirror",
        job.guid,
        42,
    )
    assert one.envelope.correlation_id == job.data_file_id
    assert one.envelope.causation_id == job.causation_id


def test_failure_message_names_every_store_and_reason() -> None:
    """A file short of its policy is described with the count and each store's reason."""
    job = core.plan(stored(), "eu", view(), in_disk)
    assert isinstance(job, core.ReplicationJob)
    text = core.failure_message(job, {"mirror"}, {"cloud": "PermissionDenied: no"})
    assert "1 of 2 copies" in text
    assert "cloud: PermissionDenied: no" in text


def regional(**group: object) -> ConfigView:
    fields: dict[str, object] = {"replica_store": "asia-store", "fallback_group": "central"}
    fields.update(group)
    return ConfigView(
        destinations={"site-a": f.destination("site-a", transfer_group="asia")},
        transfer_groups={"asia": f.group("asia", **fields), "central": f.group("central")},
    )


def test_a_regional_group_pre_stages_into_its_replica() -> None:
    """A file of a regional group that does not replicate is still copied, to its replica
    only, and the job names the destination the staged copy is for."""
    assert core.replicating(regional())
    job = core.plan(stored(), "asia", regional(), in_disk, destination="site-a")
    assert isinstance(job, core.ReplicationJob)
    assert (job.candidates, job.wanted, job.staging) == (("asia-store",), 1, "asia-store")
    assert job.destination == "site-a"


def test_staging_comes_first_and_replication_still_happens() -> None:
    """A regional group that also replicates stages first, then makes its replication copies."""
    group = {"stores": ("disk", "mirror"), "replicate": True}
    job = core.plan(stored(), "asia", regional(**group), in_disk, destination="site-a")
    assert isinstance(job, core.ReplicationJob)
    assert (job.candidates, job.wanted) == (("asia-store", "mirror"), 2)


def test_an_object_staged_already_or_stored_in_the_region_is_skipped() -> None:
    """A copy known in the replica, or an object stored there in the first place, is not
    staged again."""
    assert isinstance(core.plan(stored(), "asia", regional(), in_disk, {"asia-store"}), core.Skip)
    in_region = core.plan(stored(), "asia", regional(), lambda n: n == "asia-store")
    assert isinstance(in_region, core.Skip)


def test_the_staged_event_is_keyed_to_the_destination_and_stable() -> None:
    """The copy into the replica gives a DataFileStaged for the destination, caused by the
    copy's event, with an id derived from file and store (a redelivery repeats it)."""
    job = core.plan(stored(), "asia", regional(), in_disk, destination="site-a")
    assert isinstance(job, core.ReplicationJob)
    copy = core.replicated(job, "asia-store", 7, T0, "replicator/test")
    event = core.staged(job, copy)
    again = core.staged(job, core.replicated(job, "asia-store", 9, T0, "replicator/test"))
    assert (event.destination, event.transfer_group, event.store) == (
        "site-a",
        "asia",
        "asia-store",
    )
    assert (event.from_store, event.size, event.duration_ms) == (PRIMARY, 42, 7)
    assert event.envelope.causation_id == copy.envelope.event_id
    assert event.envelope.event_id == again.envelope.event_id
