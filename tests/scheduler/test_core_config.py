"""Given/when/then: configuration changes of destinations, hosts and associations, stored
data files in orders, and what the runner persists."""

from __future__ import annotations

from bus.events.base import TransferStatus
from bus.events.config_changes import AssociationRemoved, DestinationRemoved
from bus.events.datafiles import Checksums, DataFileRegistered, DataFileStored
from bus.events.transfers import HostSwitched, TransferDownloaded
from consumers.scheduler.core import next_due
from tests.scheduler.factories import (
    T0,
    Scheduler,
    at,
    changed,
    configured,
    destination,
    env,
    host,
    of,
    ordered,
    ordered_ids,
    queued,
    succeeded,
)


def test_more_connections_start_more_transfers() -> None:
    """Raising the destination's max connections orders more transfers at once."""
    dest = destination(max_connections=1)
    s = Scheduler(configured(dest), *[queued(f"t{i}") for i in range(4)])
    assert ordered_ids(s.settle(T0)) == ["t0"]
    assert ordered_ids(s.given(changed(dest, max_connections=3)).settle(at(1))) == ["t1", "t2"]


def test_host_made_inactive_hands_over_to_the_next_host() -> None:
    """A host deactivated in its configuration is left for the next one, with the reason."""
    h1 = host("h1")
    s = Scheduler(
        configured(destination(max_connections=1), h1, host("h2")), queued("a"), queued("b")
    )
    (first,) = ordered(s.settle(T0))
    s.given(changed(h1, active=False), succeeded(first, at(1)))
    out = s.settle(at(1))
    (switch,) = of(out, HostSwitched)
    assert (switch.from_host, switch.to_host) == ("h1", "h2")
    assert switch.reason == "Host h1 is no longer usable"
    assert [o.host.id for o in ordered(out)] == ["h2"]


def test_removed_association_takes_the_host_out_of_the_list() -> None:
    """Removing a host's association leaves the destination with the others."""
    s = Scheduler(configured(destination(), host("h1"), host("h2")), queued("a"))
    s.given(AssociationRemoved(envelope=env(), destination="dest", host="h1"))
    assert [o.host.id for o in ordered(s.settle(T0))] == ["h2"]


def test_order_carries_where_the_stored_file_is() -> None:
    """The order names the stored object (guid, store, location, checksums) and its metadata."""
    sums = Checksums(adler32="0a0b0c0d", md5="d41d8cd98f00b204e9800998ecf8427e")
    s = Scheduler(
        configured(),
        DataFileRegistered(
            envelope=env(),
            data_file_id="df-t1",
            destination="dest",
            target="t1.bin",
            transfer_group="tg",
            expiry_time=at(600),
            original="/data/t1.bin",
            metadata={"stream": "oper"},
        ),
        DataFileStored(
            envelope=env(),
            data_file_id="df-t1",
            guid="g-1",
            store="local",
            location="file:///var/store/g-1",
            size=10,
            checksums=sums,
            duration_ms=1,
        ),
        queued("t1"),
    )
    (order,) = ordered(s.settle(T0))
    assert (order.guid, order.store, order.location, order.checksums) == (
        "g-1",
        "local",
        "file:///var/store/g-1",
        sums,
    )
    assert (order.original, dict(order.metadata)) == ("/data/t1.bin", {"stream": "oper"})


def test_persisted_summary_counts_running_transfers_per_host() -> None:
    """The summary a runner writes back says how many attempts run on each host."""
    s = Scheduler(configured(), queued("a"), queued("b"), queued("c"))
    s.settle(T0)
    assert dict(s.state.summary("dest").running) == {"h1": 2}
    transfers, destinations = s.state.drain_changes()
    assert transfers == {"a", "b", "c"}
    assert destinations == {"dest"}
    assert s.state.drain_changes() == (set(), set())


def test_next_due_is_now_after_a_new_event() -> None:
    """After any event that touches a destination, the scheduler must decide at once."""
    s = Scheduler(configured())
    s.settle(T0)
    s.given(queued("t1"))
    assert next_due(s.state, at(1)) == at(1)


def test_removed_destination_orders_nothing_more() -> None:
    """After its destination is removed, a queued transfer is kept but not ordered."""
    s = Scheduler(configured(), queued("t1"))
    s.given(DestinationRemoved(envelope=env(), name="dest"))
    assert s.settle(T0) == []
    assert s.entry("t1").status is TransferStatus.WAIT


def test_portal_download_of_a_standby_transfer_makes_it_done() -> None:
    """A held (portal) transfer downloaded by a data user is DONE."""
    s = Scheduler(configured(), queued("t1", status=TransferStatus.HOLD))
    s.given(
        TransferDownloaded(
            envelope=env(),
            transfer_id="t1",
            destination="dest",
            user="u",
            protocol="sftp",
            bytes_sent=10,
        )
    )
    assert s.entry("t1").status is TransferStatus.DONE
