"""The scheduler's state: one frozen entry per transfer, a small frozen summary per destination,
and the in-memory indexes rebuilt from them.

Shape (DESIGN.md §8 "Scheduler state shape"): never a destination's whole queue as one value.
What is persisted (and what faust tables would hold) is ``TransferEntry`` keyed by transfer
id, ``DestinationSummary`` keyed by destination (``SchedulerState.summary`` folds in the
running count per host) and the few operator requests still pending; everything else here
(per-destination heaps, running/held/failed sets, the dirty set and the timer heap) is an
index derived from them, rebuilt by ``SchedulerState.restore`` when partitions are assigned.

Why the container is mutable: copying a million-entry map per event is out of the question.
The entries and summaries are frozen and replaced, never changed; the container is changed
only through ``put_entry``/``put_summary`` (called by ``evolve``), which keep the indexes in
step. ``changed_transfers``/``changed_destinations`` say which keys a runner must write back.
Heaps use lazy deletion: a node is valid only while it matches its entry's current keys.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bus.events.base import DestinationStatus, Event, TransferStatus
from bus.events.config import Destination, Host, TransferGroup
from bus.events.datafiles import Checksums
from consumers.scheduler.lifecycle import ORDERABLE, PENDING


class Followup(StrEnum):
    """What the scheduler still owes a transfer whose attempt ended badly."""

    NONE = "NONE"
    REQUEUE = "REQUEUE"  # the host's failure: requeue (RETR); the host's retries pace it
    STOP = "STOP"  # the file's own failure: stop (STOP)
    REQUEUE_LATER = "REQUEUE_LATER"  # transient failure: requeue after the retry frequency


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFile:
    """Where a data file's bytes are, as the movers need it in an order."""

    data_file_id: str
    guid: str
    store: str
    location: str
    checksums: Checksums
    original: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferEntry:
    """One transfer as the scheduler knows it (persisted, keyed by transfer id)."""

    transfer_id: str
    destination: str
    data_file_id: str
    target: str
    size: int
    status: TransferStatus
    priority: int
    queue_time: datetime
    expiry_time: datetime
    scheduled_time: datetime | None = None
    file_instance: int = 1
    attempt: int = 0  # number of the last ordered attempt; outcomes of others are ignored
    host_id: str | None = None  # host of the last ordered attempt
    transfer_group: str | None = None  # transfer group of the last ordered attempt
    # consecutive failed attempts on ``transfer_group``: on a regional group, its
    # ``fallback_after`` sends the next attempt to the group's fallback group
    group_failures: int = 0
    mover_id: str | None = None  # mover running the last attempt, once started
    ordered_at: datetime | None = None
    # order time of the first attempt since it was queued or last delivered: an attempt
    # without an outcome, or one that failed after its rename, may have delivered the file,
    # so every reissue asks its mover to look at the destination first (check_since)
    unsettled_since: datetime | None = None
    start_count: int = 0  # starts since the last max-start delay
    requeue_count: int = 0  # max-start delays so far
    delayed_at: datetime | None = None  # when its queue time was last pushed into the future
    followup: Followup = Followup.NONE
    reason: str = ""  # why it is in its status (the last outcome's message)
    last_event_id: str = ""  # causation id for what the scheduler decides next about it
    version: int = 0  # changes applied so far; a decision's id is derived from it

    @property
    def running(self) -> bool:
        """Whether an attempt holds a connection slot."""
        return self.status is TransferStatus.EXEC and self.followup is Followup.NONE


@dataclass(frozen=True, slots=True)
class HostFailure:
    """Consecutive failures of a host for one destination, and when it may be tried again."""

    count: int
    last_at: datetime
    next_try: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationSummary:
    """The small per-destination scheduler value (persisted, keyed by destination)."""

    name: str
    status: DestinationStatus = DestinationStatus.WAIT  # as last announced
    status_reason: str = ""
    current_host: str | None = None  # host new orders go to
    announced_host: str | None = None  # host last announced by HostSwitched
    switch_reason: str = ""
    running: Mapping[str, int] = field(default_factory=dict)  # running attempts per host
    failures: Mapping[str, HostFailure] = field(default_factory=dict)
    cycle: int = 0  # full passes through the host list since the last success
    # the last failure that was a host's ("host h1: AuthenticationFailed: ..."), shown in the
    # destination's status reasons until a success
    last_error: str = ""
    sleep_until: datetime | None = None  # pause between cycles (IDLE)
    # when failures last moved the destination on (next host or next cycle): attempts ordered
    # before then failed in that outage and count no more
    moved_at: datetime | None = None
    exhausted: bool = False  # retry count of cycles reached: HOLD "Failed"
    reset_time: datetime | None = None  # back to the primary host at this time
    last_ok: str | None = None
    # when a transfer that needed more than one attempt, or the first since a restart, got
    # through: transfers delayed before then are rescheduled ("reschedule after recovery")
    recovered_at: datetime | None = None
    restarted: bool = False  # restarted by an operator, no delivery since
    # when an attempt last succeeded here (its event's time): EXEC is kept a short hold past
    # it, so a burst of short transfers does not flap EXEC/WAIT (``decide``)
    last_delivered: datetime | None = None
    last_ko: str | None = None
    deactivated: frozenset[str] = frozenset()  # hosts an operator took out of use
    # operator overrides of association priority
    host_priority: Mapping[str, int] = field(default_factory=dict)
    version: int = 0  # destination-level decisions applied; their ids are derived from it


class DestinationRuntime:
    """Per-destination indexes (derived, in memory): heaps, sets, config, pending requests."""

    __slots__ = (
        "associations",
        "by_host",
        "by_target",
        "config",
        "delayed",
        "due",
        "expiry",
        "failed",
        "followups",
        "held",
        "idle_due",
        "name",
        "orderable",
        "purgeable",
        "ready",
        "requests",
        "rescheduled",
        "running",
        "staging_due",
        "started",
        "summary",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.summary = DestinationSummary(name=name)
        self.config: Destination | None = None
        self.associations: dict[str, int] = {}  # host id -> association priority
        # (priority, queue time, id) of orderable transfers whose queue time has come
        self.ready: list[tuple[int, datetime, str]] = []
        # (queue time, id) of orderable transfers queued for later
        self.delayed: list[tuple[datetime, str]] = []
        self.expiry: list[tuple[datetime, str]] = []  # (expiry time, id) of pending transfers
        # (expiry + purge delay, id) of finished transfers whose expiry has passed
        self.purgeable: list[tuple[datetime, str]] = []
        self.running: set[str] = set()
        # running attempts per host: kept here, not in the frozen summary, because it changes
        # with every order and outcome; ``SchedulerState.summary`` folds it in for persistence
        self.by_host: dict[str, int] = {}
        # target -> transfer id (a set when several share it), kept only while the destination
        # has a duplicate rule (``scheduler.requeueon``): None when it has none
        self.by_target: dict[str, str | set[str]] | None = None
        self.orderable = 0  # transfers in WAIT or RETR (due or not)
        # when a transfer waiting for its pre-staged copy (a regional group) stops waiting
        self.staging_due: datetime | None = None
        self.followups: set[str] = set()  # failed or interrupted: owed a requeue/stop
        self.held: set[str] = set()
        self.failed: set[str] = set()  # FAIL and STOP, for "requeue all failed"
        self.requests: dict[str, Event] = {}  # operator requests not yet answered, by event id
        self.due: datetime | None = None  # when this destination must be visited again
        # the summary's recovered_at once no delayed transfer predates it (housekeeping)
        self.rescheduled: datetime | None = None
        self.idle_due: datetime | None = None  # when a held EXEC may turn WAIT (a timer)
        # when each mover last started an attempt here (``TransferStarted``): what this
        # destination's own events say of the movers' liveness, which a snapshot of its
        # partition must carry (``snapshots``) for ``movers`` to come back as a replay makes it
        self.started: dict[str, datetime] = {}


class SchedulerState:
    """Everything the scheduler knows; changed only by ``evolve`` through this small API."""

    __slots__ = (
        "blocked_groups",
        "changed_destinations",
        "changed_transfers",
        "destinations",
        "dirty",
        "file_refs",
        "files",
        "host_destinations",
        "host_running",
        "hosts",
        "mover_groups",
        "mover_transfers",
        "movers",
        "staged",
        "timers",
        "transfer_groups",
        "transfers",
    )

    def __init__(self) -> None:
        self.transfers: dict[str, TransferEntry] = {}
        self.destinations: dict[str, DestinationRuntime] = {}
        self.hosts: dict[str, Host] = {}
        self.transfer_groups: dict[str, TransferGroup] = {}  # regional ones name a fallback
        self.host_destinations: dict[str, set[str]] = {}
        # running attempts per host over every destination this worker owns: a host's max
        # connections hold across the destinations that share it
        self.host_running: dict[str, int] = {}
        self.files: dict[str, StoredFile] = {}
        # data file -> regional store replicas it was pre-staged in (``DataFileStaged``)
        self.staged: dict[str, frozenset[str]] = {}
        self.file_refs: dict[str, int] = {}  # data file id -> transfers known for it
        self.movers: dict[str, datetime] = {}  # mover id -> last heartbeat
        self.mover_transfers: dict[str, set[str]] = {}  # mover id -> running transfer ids
        self.mover_groups: dict[str, str] = {}  # mover id -> its transfer group (heartbeats)
        # transfer groups whose movers were all gone at a visit: their destinations wait for
        # the next heartbeat of one of them ("No Transfer Server available")
        self.blocked_groups: set[str] = set()
        self.dirty: set[str] = set()  # destinations to visit at the next decide
        self.timers: list[tuple[datetime, str]] = []  # (due, destination), lazily invalidated
        self.changed_transfers: set[str] = set()
        self.changed_destinations: set[str] = set()

    def runtime(self, name: str) -> DestinationRuntime:
        """The destination's indexes, created empty on first mention."""
        rt = self.destinations.get(name)
        if rt is None:
            rt = self.destinations[name] = DestinationRuntime(name)
        return rt

    def put_summary(self, rt: DestinationRuntime, summary: DestinationSummary) -> None:
        """Replace a destination's summary and mark it for a visit."""
        rt.summary = summary
        self.dirty.add(rt.name)
        self.changed_destinations.add(rt.name)

    def put_entry(self, entry: TransferEntry, at: datetime | None) -> None:
        """Replace a transfer's entry and keep every index in step; ``at`` is the event time
        (a transfer whose queue time is not after it goes straight to the ready heap)."""
        tid = entry.transfer_id
        old = self.transfers.get(tid)
        self.transfers[tid] = entry
        if old is None:
            self.file_refs[entry.data_file_id] = self.file_refs.get(entry.data_file_id, 0) + 1
        rt = self.runtime(entry.destination)
        status = entry.status
        now_orderable = status in ORDERABLE
        if now_orderable != (old is not None and old.status in ORDERABLE):
            rt.orderable += 1 if now_orderable else -1
        if now_orderable and (
            old is None
            or old.status not in ORDERABLE
            or old.priority != entry.priority
            or old.queue_time != entry.queue_time
        ):
            if at is not None and entry.queue_time <= at:
                heapq.heappush(rt.ready, (entry.priority, entry.queue_time, tid))
            else:
                heapq.heappush(rt.delayed, (entry.queue_time, tid))
        # one expiry node per transfer and expiry time, whatever its status (a node popped when
        # the transfer was not pending is dropped, so one coming back to pending after its
        # expiry is indexed again)
        if (
            old is None
            or old.expiry_time != entry.expiry_time
            or (
                status in PENDING
                and old.status not in PENDING
                and (at is None or entry.expiry_time <= at)
            )
        ):
            heapq.heappush(rt.expiry, (entry.expiry_time, tid))
        self._sets(rt, old, entry)
        if old is None and rt.by_target is not None:
            index_target(rt.by_target, entry.target, tid)
        self.dirty.add(rt.name)
        self.changed_transfers.add(tid)

    def _host_slot_freed(self, host_id: str, freed_by: str) -> None:
        """A host that was at its max connections has a free one: the other destinations
        using it may order again (they were not visited when the slot was taken)."""
        host = self.hosts.get(host_id)
        if host is None or host.max_connections < 0:
            return
        if self.host_running[host_id] + 1 >= host.max_connections:
            for name in self.host_destinations.get(host_id, ()):
                if name != freed_by:
                    self.dirty.add(name)

    def index_targets(self, rt: DestinationRuntime, on: bool) -> None:
        """Keep (build once, from every known transfer) or drop the destination's target
        index: only destinations with a duplicate rule pay for it."""
        if not on:
            rt.by_target = None
        elif rt.by_target is None:
            rt.by_target = {}
            for e in self.transfers.values():
                if e.destination == rt.name:
                    index_target(rt.by_target, e.target, e.transfer_id)

    def same_target(self, rt: DestinationRuntime, e: TransferEntry) -> list[TransferEntry]:
        """The other known transfers of ``e``'s destination with its target."""
        found = (rt.by_target or {}).get(e.target)
        if found is None or isinstance(found, str):
            return []
        return [self.transfers[t] for t in sorted(found) if t != e.transfer_id]

    def _sets(self, rt: DestinationRuntime, old: TransferEntry | None, new: TransferEntry) -> None:
        tid = new.transfer_id
        status = new.status
        # not the property: this runs for every event, and it is called twice per entry here
        now_running = status is TransferStatus.EXEC and new.followup is Followup.NONE
        was_running = (
            old is not None and old.status is TransferStatus.EXEC and old.followup is Followup.NONE
        )
        if now_running != was_running or (
            was_running and old is not None and old.host_id != new.host_id
        ):
            by_host, on_host = rt.by_host, self.host_running
            if was_running and old is not None and old.host_id is not None:
                by_host[old.host_id] -= 1
                on_host[old.host_id] -= 1
                self._host_slot_freed(old.host_id, rt.name)
            if now_running and new.host_id is not None:
                by_host[new.host_id] = by_host.get(new.host_id, 0) + 1
                on_host[new.host_id] = on_host.get(new.host_id, 0) + 1
            self.changed_destinations.add(rt.name)
        if now_running:
            rt.running.add(tid)
        elif was_running:
            rt.running.discard(tid)
        if (
            old is not None
            and old.mover_id is not None
            and (old.mover_id != new.mover_id or not now_running)
        ):
            self.mover_transfers.get(old.mover_id, set()).discard(tid)
        if now_running and new.mover_id is not None:
            self.mover_transfers.setdefault(new.mover_id, set()).add(tid)
        if new.followup is not Followup.NONE or status is TransferStatus.INTR:
            rt.followups.add(tid)
        elif rt.followups:
            rt.followups.discard(tid)
        if status is TransferStatus.HOLD:
            rt.held.add(tid)
        elif rt.held:
            rt.held.discard(tid)
        if status is TransferStatus.FAIL or status is TransferStatus.STOP:
            rt.failed.add(tid)
        elif rt.failed:
            rt.failed.discard(tid)

    def purge(self, entry: TransferEntry) -> None:
        """Forget a finished transfer whose lifetime has passed (memory stays bounded by the
        live transfers); its data file's stored location goes with the last transfer of it."""
        tid, dfid = entry.transfer_id, entry.data_file_id
        if self.transfers.pop(tid, None) is None:
            return
        rt = self.runtime(entry.destination)
        if rt.by_target is not None:
            unindex_target(rt.by_target, entry.target, tid)
        rt.failed.discard(tid)
        rt.held.discard(tid)
        rt.followups.discard(tid)
        refs = self.file_refs.get(dfid, 1) - 1
        if refs > 0:
            self.file_refs[dfid] = refs
        else:
            self.file_refs.pop(dfid, None)
            self.files.pop(dfid, None)
            self.staged.pop(dfid, None)
        self.changed_transfers.add(tid)

    def schedule(self, rt: DestinationRuntime, due: datetime | None) -> None:
        """Remember when a destination must be visited again (its timer)."""
        if due != rt.due:
            rt.due = due
            if due is not None:
                heapq.heappush(self.timers, (due, rt.name))

    def summary(self, name: str) -> DestinationSummary:
        """The destination's summary as persisted (with its running count per host)."""
        rt = self.destinations[name]
        running = {h: n for h, n in rt.by_host.items() if n}
        return replace(rt.summary, running=running)

    def pending_requests(self) -> list[Event]:
        """Operator requests not answered yet (a graceful hold waiting for a running attempt),
        to persist beside the entries: ``restore`` takes them back."""
        return [req for rt in self.destinations.values() for req in rt.requests.values()]

    def drain_changes(self) -> tuple[set[str], set[str]]:
        """The transfer ids and destinations changed since the last drain (to write back)."""
        changed = self.changed_transfers, self.changed_destinations
        self.changed_transfers, self.changed_destinations = set(), set()
        return changed

    @classmethod
    def restore(
        cls,
        *,
        transfers: Iterable[TransferEntry] = (),
        summaries: Iterable[DestinationSummary] = (),
        destinations: Iterable[Destination] = (),
        hosts: Iterable[Host] = (),
        associations: Iterable[tuple[str, str, int]] = (),
        files: Iterable[StoredFile] = (),
        requests: Iterable[Event] = (),
    ) -> SchedulerState:
        """Rebuild the state and its indexes from persisted entries and configuration (what a
        worker does when partitions are assigned); ``associations`` are (destination, host,
        priority)."""
        state = cls()
        for host in hosts:
            state.hosts[host.id] = host
        for dest in destinations:
            state.runtime(dest.name).config = dest
        for dest_name, host_id, priority in associations:
            state.runtime(dest_name).associations[host_id] = priority
            state.host_destinations.setdefault(host_id, set()).add(dest_name)
        for file in files:
            state.files[file.data_file_id] = file
        for summary in summaries:
            # running counts are recomputed from the entries below
            state.runtime(summary.name).summary = replace(summary, running={})
        for entry in transfers:  # put_entry without the heap pushes: heapify once at the end
            tid = entry.transfer_id
            state.transfers[tid] = entry
            state.file_refs[entry.data_file_id] = state.file_refs.get(entry.data_file_id, 0) + 1
            rt = state.runtime(entry.destination)
            if entry.status in ORDERABLE:
                rt.orderable += 1
                rt.delayed.append((entry.queue_time, tid))  # decide moves the due ones
            rt.expiry.append((entry.expiry_time, tid))
            state._sets(rt, None, entry)
        for rt in state.destinations.values():
            heapq.heapify(rt.delayed)
            heapq.heapify(rt.expiry)
            state.dirty.add(rt.name)
        for request in requests:
            rt = state.runtime(request.destination)  # type: ignore[attr-defined]
            rt.requests[request.envelope.event_id] = request
            state.dirty.add(rt.name)
        state.changed_transfers.clear()
        state.changed_destinations.clear()
        return state


Handler = Callable[[SchedulerState, Any], None]
"""How one event type changes the state (``evolve`` dispatches on the event's type)."""

GONE = datetime.min.replace(tzinfo=UTC)


def index_target(index: dict[str, str | set[str]], target: str, tid: str) -> None:
    """Add ``tid`` under ``target`` (a plain id while it is alone: most targets are)."""
    held = index.get(target)
    if held is None:
        index[target] = tid
    elif isinstance(held, str):
        if held != tid:
            index[target] = {held, tid}
    else:
        held.add(tid)


def unindex_target(index: dict[str, str | set[str]], target: str, tid: str) -> None:
    held = index.get(target)
    if held == tid:
        del index[target]
    elif isinstance(held, set):
        held.discard(tid)
        if len(held) == 1:
            index[target] = next(iter(held))


"""Last heartbeat of a mover that stopped: long ago, so what it still runs is interrupted."""


def registrar(table: dict[type[Event], Handler]) -> Callable[..., Callable[[Handler], Handler]]:
    """A decorator factory registering a handler in ``table`` for the given event types."""

    def on(*types: type[Event]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for t in types:
                table[t] = fn
            return fn

        return register

    return on
