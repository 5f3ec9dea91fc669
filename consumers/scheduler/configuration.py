"""How configuration, stored data files, movers and destination/host events change the
scheduler's state (part of ``evolve``, see ``core``).

Rules kept here: configuration is the latest definition (compacted topic); an operator's host
priority holds until the association itself changes; leaving HOLD/STOP through a restart
(RSTR) resets the destination's host provider; deactivating the host in use moves to the next
host, and ``decide`` announces it.
"""

from __future__ import annotations

from dataclasses import replace

from bus.events.base import DestinationStatus, Event
from bus.events.config_changes import (
    AssociationChanged,
    AssociationDefined,
    AssociationRemoved,
    DestinationChanged,
    DestinationDefined,
    DestinationRemoved,
    HostChanged,
    HostDefined,
    HostRemoved,
    TransferGroupChanged,
    TransferGroupDefined,
    TransferGroupRemoved,
)
from bus.events.datafiles import Checksums, DataFileRegistered, DataFileStored
from bus.events.movers import MoverHeartbeat, MoverStopped
from bus.events.transfers import (
    DataFileStaged,
    DestinationStatusChanged,
    HostActivated,
    HostDeactivated,
    HostPriorityChanged,
    HostSwitched,
)
from consumers.scheduler import duplicates, failover, outputs
from consumers.scheduler.state import (
    GONE,
    DestinationRuntime,
    DestinationSummary,
    Handler,
    SchedulerState,
    StoredFile,
    registrar,
)

HANDLERS: dict[type[Event], Handler] = {}
_on = registrar(HANDLERS)


# -- configuration ---------------------------------------------------------------------------


@_on(DestinationDefined, DestinationChanged)
def _destination(state: SchedulerState, ev: DestinationDefined) -> None:
    rt = state.runtime(ev.destination.name)
    rt.config = ev.destination
    state.index_targets(rt, bool(ev.destination.properties.get(duplicates.RULE)))
    state.dirty.add(rt.name)


@_on(DestinationRemoved)
def _destination_removed(state: SchedulerState, ev: DestinationRemoved) -> None:
    rt = state.destinations.get(ev.name)
    if rt is not None:
        rt.config = None  # its transfers stay known; nothing is ordered without a definition


@_on(HostDefined, HostChanged)
def _host(state: SchedulerState, ev: HostDefined) -> None:
    state.hosts[ev.host.id] = ev.host
    state.dirty.update(state.host_destinations.get(ev.host.id, ()))


@_on(HostRemoved)
def _host_removed(state: SchedulerState, ev: HostRemoved) -> None:
    state.hosts.pop(ev.id, None)
    state.dirty.update(state.host_destinations.get(ev.id, ()))


@_on(AssociationDefined, AssociationChanged)
def _association(state: SchedulerState, ev: AssociationDefined) -> None:
    a = ev.association
    rt = state.runtime(a.destination)
    rt.associations[a.host] = a.priority
    state.host_destinations.setdefault(a.host, set()).add(a.destination)
    if a.host in rt.summary.host_priority:  # the configuration now says it
        overrides = {h: p for h, p in rt.summary.host_priority.items() if h != a.host}
        state.put_summary(rt, replace(rt.summary, host_priority=overrides))
    state.dirty.add(rt.name)


@_on(AssociationRemoved)
def _association_removed(state: SchedulerState, ev: AssociationRemoved) -> None:
    rt = state.runtime(ev.destination)
    rt.associations.pop(ev.host, None)
    state.host_destinations.get(ev.host, set()).discard(ev.destination)
    state.dirty.add(rt.name)


@_on(TransferGroupDefined, TransferGroupChanged)
def _transfer_group(state: SchedulerState, ev: TransferGroupDefined) -> None:
    state.transfer_groups[ev.transfer_group.name] = ev.transfer_group
    _group_changed(state, ev.transfer_group.name)


@_on(TransferGroupRemoved)
def _transfer_group_removed(state: SchedulerState, ev: TransferGroupRemoved) -> None:
    state.transfer_groups.pop(ev.name, None)
    _group_changed(state, ev.name)


def _group_changed(state: SchedulerState, name: str) -> None:
    # its destinations' next orders may go elsewhere (a fallback named or dropped)
    for rt in state.destinations.values():
        if rt.config is not None and rt.config.transfer_group == name:
            state.dirty.add(rt.name)


@_on(DataFileStored)
def _stored(state: SchedulerState, ev: DataFileStored) -> None:
    old = state.files.get(ev.data_file_id)
    state.files[ev.data_file_id] = StoredFile(
        data_file_id=ev.data_file_id,
        guid=ev.guid,
        store=ev.store,
        location=ev.location,
        checksums=ev.checksums,
        original=old.original if old is not None else None,
        metadata=old.metadata if old is not None else {},
    )


@_on(DataFileStaged)
def _staged(state: SchedulerState, ev: DataFileStaged) -> None:
    # a regional transfer waiting for its copy in the region's replica may be ordered now
    state.staged[ev.data_file_id] = state.staged.get(ev.data_file_id, frozenset()) | {ev.store}
    state.dirty.add(ev.destination)
    state.runtime(ev.destination)


@_on(DataFileRegistered)
def _registered(state: SchedulerState, ev: DataFileRegistered) -> None:
    old = state.files.get(ev.data_file_id)
    if old is None:
        old = StoredFile(
            data_file_id=ev.data_file_id,
            guid=ev.data_file_id,
            store="",
            location="",
            checksums=Checksums(adler32=""),
        )
    state.files[ev.data_file_id] = replace(old, original=ev.original, metadata=ev.metadata)


# -- movers -------------------------------------------------------------------------------------


@_on(MoverHeartbeat)
def _heartbeat(state: SchedulerState, ev: MoverHeartbeat) -> None:
    state.movers[ev.mover_id] = ev.envelope.occurred_at
    state.mover_groups[ev.mover_id] = ev.transfer_group
    if ev.transfer_group in state.blocked_groups:
        # a transfer server is back: the group's destinations order again
        state.blocked_groups.discard(ev.transfer_group)
        for name, rt in state.destinations.items():
            if rt.config is not None and rt.config.transfer_group == ev.transfer_group:
                state.dirty.add(name)


@_on(MoverStopped)
def _mover_stopped(state: SchedulerState, ev: MoverStopped) -> None:
    # anything it still runs (not reported interrupted) is interrupted at the next decide
    state.movers[ev.mover_id] = GONE
    state.mover_groups[ev.mover_id] = ev.transfer_group


# -- destinations and hosts ---------------------------------------------------------------------


def _decided(state: SchedulerState, ev: Event) -> DestinationRuntime | None:
    """The destination a decision was made on, or None for a stale duplicate."""
    rt = state.runtime(ev.destination)  # type: ignore[attr-defined]
    return rt if outputs.destination_decided_on(rt.summary, ev) else None


def _put(state: SchedulerState, rt: DestinationRuntime, s: DestinationSummary) -> None:
    state.put_summary(rt, replace(s, version=rt.summary.version + 1))


@_on(DestinationStatusChanged)
def _destination_status(state: SchedulerState, ev: DestinationStatusChanged) -> None:
    rt = _decided(state, ev)
    if rt is None:
        return
    s = replace(rt.summary, status=ev.new_status, status_reason=ev.reason)
    if ev.new_status is DestinationStatus.RSTR:
        # a restart forgets failures and cycles and starts again from the primary host
        s = DestinationSummary(
            name=s.name,
            status=s.status,
            status_reason=s.status_reason,
            running=s.running,
            last_ok=s.last_ok,
            last_ko=s.last_ko,
            restarted=True,  # its next delivery is a recovery (see ``_reschedule``)
            deactivated=s.deactivated,
            host_priority=s.host_priority,
        )
    _put(state, rt, s)


@_on(HostSwitched)
def _switched(state: SchedulerState, ev: HostSwitched) -> None:
    rt = _decided(state, ev)
    if rt is None:
        return
    order = failover.host_order(rt.associations, state.hosts, rt.summary)
    _put(
        state,
        rt,
        failover.on_switch(rt.summary, order, rt.config, ev.to_host, ev.envelope.occurred_at),
    )


@_on(HostActivated, HostDeactivated)
def _activation(state: SchedulerState, ev: HostActivated | HostDeactivated) -> None:
    rt = _decided(state, ev)
    if rt is None:
        return
    s = rt.summary
    if isinstance(ev, HostActivated):
        _put(state, rt, replace(s, deactivated=s.deactivated - {ev.host_id}))
        return
    before = failover.host_order(rt.associations, state.hosts, s)
    current = failover.current_host(s, before)
    s = replace(s, deactivated=s.deactivated | {ev.host_id})
    if current == ev.host_id:
        # leave it for the next host in the list (decide announces the switch)
        after = failover.host_order(rt.associations, state.hosts, s)
        index = before.index(current)
        nxt = next((h for h in before[index + 1 :] if h in after), after[0] if after else None)
        reason = f"Host {current} deactivated"
        s = replace(s, current_host=nxt, announced_host=current, switch_reason=reason)
    _put(state, rt, s)


@_on(HostPriorityChanged)
def _host_priority(state: SchedulerState, ev: HostPriorityChanged) -> None:
    rt = _decided(state, ev)
    if rt is None:
        return
    overrides = {**rt.summary.host_priority, ev.host_id: ev.new_priority}
    _put(state, rt, replace(rt.summary, host_priority=overrides))
