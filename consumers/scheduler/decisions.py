"""``decide(state, settings, now)``: the events the scheduler publishes next, and
``next_due(state, now)``: when it must decide again. Pure: the output depends only on the
state, the settings and ``now``.

How it stays cheap with thousands of destinations: ``evolve`` marks the destinations an event
touched (``state.dirty``) and each visited destination leaves a timer for the next moment it
needs attention (a delayed transfer's queue time, an expiry, a host retry, the end of a sleep,
a reset to the primary host, a window opening, the end of an idle hold). ``decide`` visits
only dirty destinations and due timers, so its cost does not grow with the number of
destinations. This is equivalent to visiting every destination: a clean destination with no
due timer would decide nothing.
What ``decide`` changes in the state is index housekeeping only (stale heap nodes dropped,
dirty marks cleared for destinations that decided nothing, timers set, moot requests
dropped, finished transfers forgotten once their lifetime has passed: nothing can change them
then, and a replay that brings them back forgets them again at the next decide); a
destination that decided something stays dirty until its decisions are evolved, so deciding
again before evolving returns the same events (same ids).

One visit of a destination, in order: operator requests; follow-ups of ended attempts (a
failure that is the host's is requeued, a transient one requeued after the destination's retry
frequency, only one of the file itself stopped; an interruption requeued: never
forgotten) — a visit that answered or followed up ends there, so orders see the queue as
changed; expiry; then the destination's status and host (announce a host switch, reset to
the primary, sleep between cycles, wait for a host retry, wait for a window); then transfers
delayed by max start before the destination recovered are rescheduled; then orders,
best first (priority, queue time, id) within the destination's and the host's free
connections, delaying transfers that reached max start (or failing them at max requeue).
A destination with nothing running nor waiting turns WAIT, but an EXEC one only once
``idle_hold`` has passed since its last delivery (a burst of short transfers stays EXEC).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta

from bus.events.base import DestinationStatus, Event, TransferStatus
from bus.events.transfers import TransferInterrupted, TransferStopped
from consumers.scheduler import duplicates, failover, outputs, windows
from consumers.scheduler.lifecycle import FINISHED, ORDERABLE, PENDING
from consumers.scheduler.requests import Answerer, Verdict
from consumers.scheduler.state import (
    DestinationRuntime,
    DestinationSummary,
    Followup,
    SchedulerState,
    TransferEntry,
)

D = DestinationStatus
_UNLIMITED = 1 << 30
_WAITING = (D.IDLE, D.RETR, D.SCHE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings:
    """The scheduler's own settings (destinations and hosts come from the events)."""

    source: str = "scheduler"  # envelope source of every decision
    mover_timeout: timedelta = timedelta(seconds=30)  # no heartbeat this long: mover vanished
    max_orders_per_visit: int = 64  # bounds one visit's latency; the rest come next visit
    # a finished transfer is forgotten this long after its expiry (OpenECPDS purges expired
    # transfers hourly); the read models keep its history
    purge_after: timedelta = timedelta(hours=1)
    # a destination stays EXEC this long after its last delivery when nothing runs or waits:
    # a burst of short transfers (an acquisition batch arriving file by file) is one EXEC,
    # not an EXEC/WAIT flip per file; a real idle period still shows WAIT once it has lasted
    idle_hold: timedelta = timedelta(seconds=10)


_DEFAULT = SchedulerSettings()


def decide(state: SchedulerState, settings: SchedulerSettings, now: datetime) -> list[Event]:
    """The decisions due at ``now``: orders, requeues, expiries, status and host changes."""
    out: list[Event] = []
    touched: set[str] = set()
    _lost_movers(state, settings, now, out, touched)
    lost = len(out)  # interruptions of vanished movers: nobody to ask to abort
    timers = state.timers
    while timers and timers[0][0] <= now:
        due, name = heapq.heappop(timers)
        rt = state.destinations.get(name)
        if rt is not None and rt.due == due:
            rt.due = None
            state.dirty.add(name)
    if not state.dirty:
        return out
    answerer = Answerer(state, settings.source, now, out, touched)
    still: set[str] = set()
    for name in sorted(state.dirty):  # sorted: the same state gives the same output order
        rt = state.destinations[name]
        before = len(out)
        _visit(state, rt, settings, now, answerer)
        if len(out) > before:
            still.add(name)
        else:
            state.schedule(rt, _due(state, rt, now))
    state.dirty = still
    _abort_running(state, settings.source, now, out, lost)
    return out


def _abort_running(
    state: SchedulerState, source: str, now: datetime, out: list[Event], start: int
) -> None:
    """Ask the movers to abandon every running attempt interrupted or stopped from
    ``out[start]`` on (an immediate hold or restart, a stop): otherwise the file could still
    arrive after the operator was told it would not. Decided before ``evolve``, so ``running``
    still says what the mover is doing."""
    aborts = []
    for decision in out[start:]:
        if isinstance(decision, TransferInterrupted | TransferStopped):
            e = state.transfers.get(decision.transfer_id)
            if e is not None and e.running:
                reason = decision.reason
                aborts.append(
                    outputs.abort_requested(source, now, e, reason, decision.envelope.event_id)
                )
    out.extend(aborts)


def next_due(
    state: SchedulerState, now: datetime, settings: SchedulerSettings = _DEFAULT
) -> datetime | None:
    """The earliest time ``decide`` has something to do (``now`` if it has already), or None."""
    if state.dirty:
        return now
    timers = state.timers
    while timers:
        due, name = timers[0]
        rt = state.destinations.get(name)
        if rt is not None and rt.due == due:
            break
        heapq.heappop(timers)
    best = timers[0][0] if timers else None
    for mover, last in state.movers.items():
        if state.mover_transfers.get(mover):
            deadline = last + settings.mover_timeout
            if best is None or deadline < best:
                best = deadline
    return best if best is None or best > now else now


def _lost_movers(
    state: SchedulerState,
    settings: SchedulerSettings,
    now: datetime,
    out: list[Event],
    touched: set[str],
) -> None:
    """Interrupt what a vanished mover was running (no heartbeat, or stopped)."""
    for mover in sorted(state.mover_transfers):
        running = state.mover_transfers[mover]
        last = state.movers.get(mover)
        if not running or last is None or now - last < settings.mover_timeout:
            continue
        for tid in sorted(running):
            e = state.transfers[tid]
            touched.add(tid)
            reason = f"Mover {mover} vanished (last heard of at {last:%Y-%m-%d %H:%M:%S})"
            out.append(outputs.interrupted(settings.source, now, e, reason))


def unstarted(state: SchedulerState, before: datetime) -> list[TransferEntry]:
    """The attempts ordered before ``before`` that hold a slot but no mover has started: the
    ones whose order may never have been sent (see ``never_ordered``)."""
    return [
        e
        for e in state.transfers.values()
        if e.running and e.mover_id is None and e.ordered_at is not None and e.ordered_at < before
    ]


NEVER_ORDERED = "Its order was never sent (the scheduler stopped between deciding and ordering)"


def never_ordered(
    state: SchedulerState, settings: SchedulerSettings, now: datetime, lost: set[tuple[str, int]]
) -> list[Event]:
    """Interrupt each (transfer, attempt) of ``lost`` still running unstarted: its slot was
    taken by a ``TransferScheduled`` whose order is not in the orders topic (the worker died
    between the two). The interruption frees the slot and requeues it; being unsettled, the
    next attempt asks the destination first (check_since)."""
    out: list[Event] = []
    for tid, attempt in sorted(lost):
        e = state.transfers.get(tid)
        if e is not None and e.attempt == attempt and e.running and e.mover_id is None:
            out.append(outputs.interrupted(settings.source, now, e, NEVER_ORDERED))
    return out


NO_TRANSFER_SERVER = "No Transfer Server available"


def _no_transfer_server(
    state: SchedulerState, group: str, now: datetime, settings: SchedulerSettings
) -> bool:
    """Whether every mover of ``group`` is gone (stopped, or silent for the mover timeout).

    A group none of whose movers was ever heard of is not judged: at start-up its orders wait
    in its orders topic for the first mover, as before any heartbeat is read."""
    seen = False
    for mover, of in state.mover_groups.items():
        if of != group:
            continue
        seen = True
        last = state.movers.get(mover)
        if last is not None and now - last < settings.mover_timeout:
            return False
    return seen


def _fallback(
    state: SchedulerState, group: str, now: datetime, settings: SchedulerSettings
) -> str | None:
    """The fallback group of regional ``group`` if it has one with a live transfer server."""
    regional = state.transfer_groups.get(group)
    if regional is None or regional.fallback_group is None:
        return None
    central = regional.fallback_group
    return None if _no_transfer_server(state, central, now, settings) else central


def _group_of(
    state: SchedulerState,
    rt: DestinationRuntime,
    e: TransferEntry,
    src: str,
    now: datetime,
    settings: SchedulerSettings,
    out: list[Event],
) -> str | None:
    """The transfer group the next attempt of ``e`` is ordered to, or None while it waits.

    The destination's group, unless it is regional (continental):
    - a transfer that fell back stays on the fallback group: it met the region's trouble
      already, and the central movers read the central store, where the object is;
    - after ``fallback_after`` failed attempts in a row on the regional group, or while none of
      its movers is alive, the next attempt goes to the fallback group (``TransferFellBack``);
    - with a ``replica_store``, the regional group gets the transfer once its object is staged
      there (``DataFileStaged``; OpenECPDS selects a proxied transfer only once its file is on
      the proxy). It waits for that at most ``fallback_after`` x the destination's retry
      frequency after its queue time (the time its attempts there would have had), then falls
      back, or without a fallback is ordered to the region anyway (its movers then say
      ``NotStaged`` and it is retried like any transient failure).
    A fallback without a live transfer server itself leaves the transfer to the region.
    """
    cfg = rt.config
    assert cfg is not None
    group = cfg.transfer_group
    regional = state.transfer_groups.get(group)
    if regional is None or not regional.regional:
        return group
    central = regional.fallback_group
    if central is not None and e.transfer_group == central:
        return central
    reason = None
    failed = e.group_failures if e.transfer_group == group else 0
    if central is not None and failed >= regional.fallback_after:
        reason = f"{e.group_failures} failed attempt(s) on transfer group {group}"
    elif central is not None and _no_transfer_server(state, group, now, settings):
        reason = f"{NO_TRANSFER_SERVER} in transfer group {group}"
    elif regional.replica_store is not None and regional.replica_store not in state.staged.get(
        e.data_file_id, ()
    ):
        wait = timedelta(milliseconds=regional.fallback_after * max(cfg.retry_frequency_ms, 0))
        deadline = e.queue_time + wait
        if now < deadline:
            if rt.staging_due is None or deadline < rt.staging_due or rt.staging_due <= now:
                rt.staging_due = deadline
            return None
        if central is None:
            return group
        reason = (
            f"not staged in {regional.replica_store} by {deadline:%Y-%m-%d %H:%M:%S}"
            f" ({regional.fallback_after} x the retry frequency after its queue time)"
        )
    if reason is None or central is None:
        return group
    if _no_transfer_server(state, central, now, settings):
        return group  # the fallback has nobody either: the regional group keeps it
    out.append(outputs.fell_back(src, now, e, group, central, reason))
    return central


def _visit(
    state: SchedulerState,
    rt: DestinationRuntime,
    settings: SchedulerSettings,
    now: datetime,
    answerer: Answerer,
) -> None:
    cfg = rt.config
    if cfg is None:
        return  # transfers for a destination not (or no longer) defined wait for it
    src, out, touched = settings.source, answerer.out, answerer.touched
    answered = False
    for req_id, req in list(rt.requests.items()):
        verdict = answerer.answer(rt, req)
        if verdict is Verdict.MOOT:
            del rt.requests[req_id]
        elif verdict is Verdict.DESTINATION:
            return
        answered = answered or verdict is Verdict.APPLIED
    for tid in sorted(rt.followups):
        if tid in touched:
            continue
        e = state.transfers[tid]
        touched.add(tid)
        if e.status is TransferStatus.INTR:
            reason = f"Requeued by the scheduler after an interruption: {e.reason}"
            out.append(outputs.requeued(src, now, e, reason, e.queue_time))
        elif e.followup is Followup.REQUEUE:
            reason = (
                "Requeued by the scheduler after a transfer failure"
                f" on host {e.host_id}: {e.reason}"
            )
            out.append(outputs.requeued(src, now, e, reason, e.queue_time))
        elif e.followup is Followup.REQUEUE_LATER:
            # nobody's fault to count: the retry frequency keeps it from spinning
            later = max(e.queue_time, now + timedelta(milliseconds=cfg.retry_frequency_ms))
            reason = (
                "Requeued by the scheduler after a transient failure"
                f" on host {e.host_id} (retried at {later:%Y-%m-%d %H:%M:%S}): {e.reason}"
            )
            out.append(outputs.requeued(src, now, e, reason, later))
        else:
            reason = f"Unrecoverable error of the file itself (on host {e.host_id}): {e.reason}"
            out.append(outputs.stopped(src, now, e, reason))
    if answered or rt.followups:
        # orders wait for the next visit, when the answers and requeues are in the queue
        return
    _expire(state, rt, src, now, out, touched, settings.purge_after)
    s = rt.summary
    order = failover.host_order(rt.associations, state.hosts, s)
    target: tuple[DestinationStatus, str, datetime | None] | None
    if not cfg.active:
        target = (D.INIT, "Destination is not active", None)
    elif s.status is D.HOLD or s.status is D.STOP:
        target = None  # stays until an operator restarts it
    elif s.exhausted:
        target = (D.HOLD, f"Failed: every host failed, {s.cycle} cycle(s){_last(s)}", None)
    elif not order:
        target = (D.FAIL, "No dissemination host available", None)
    else:
        current = failover.current_host(s, order)
        assert current is not None
        announced = s.announced_host or order[0]
        if current != announced:
            if announced not in order:
                reason = f"Host {announced} is no longer usable"
            else:
                reason = s.switch_reason or f"Host {current} is now the first host"
            out.append(outputs.host_switched(src, now, s, announced, current, reason))
            return
        if failover.reset_due(s, order, now):
            reason = "Reset to the primary host after the reset frequency"
            out.append(outputs.host_switched(src, now, s, current, order[0], reason))
            return
        wait = failover.retry_wait(s, current, now)
        if s.sleep_until is not None and now < s.sleep_until:
            reason = f"Sleeping between retry cycles (cycle {s.cycle}){_last(s)}"
            target = (D.IDLE, reason, s.sleep_until)
        elif wait is not None:
            count = s.failures[current].count
            reason = f"Retrying host {current} after {count} failure(s){_last(s)}"
            target = (D.RETR, reason, wait)
        elif not windows.is_open(cfg.active_windows, now):
            opening = windows.next_opening(cfg.active_windows, now)
            target = (D.SCHE, "Outside the active time windows", opening)
        elif (
            rt.orderable
            and _no_transfer_server(state, cfg.transfer_group, now, settings)
            and _fallback(state, cfg.transfer_group, now, settings) is None
        ):
            # nothing is ordered until one of the group's movers is heard of again (its
            # heartbeat makes the destination due): no order piles up for nobody
            state.blocked_groups.add(cfg.transfer_group)
            target = (D.RETR, NO_TRANSFER_SERVER, None)
        else:
            before = len(out)
            _reschedule(state, rt, src, now, out, touched)
            started = _order(state, rt, settings, now, current, answerer)
            if started or rt.running:
                target = (D.EXEC, "Running", None)
            elif len(out) > before or rt.followups:
                target = None  # requeued or delayed just now: the next visit says
            else:
                target = _idle(rt, settings, now)
        if target is not None and target[0] in _WAITING and not rt.orderable and not rt.running:
            target = (D.WAIT, "Idle", None)
    if target is not None and target[0] is not s.status:
        new, reason, until = target
        out.append(outputs.destination_status(src, now, s, new, reason, until))


def _idle(
    rt: DestinationRuntime, settings: SchedulerSettings, now: datetime
) -> tuple[DestinationStatus, str, datetime | None] | None:
    """WAIT "Idle", unless the destination is EXEC and delivered within ``idle_hold``: it then
    stays EXEC (None: no change) and is visited again when the hold ends (``idle_due``)."""
    delivered = rt.summary.last_delivered
    if rt.summary.status is D.EXEC and delivered is not None:
        until = delivered + settings.idle_hold
        if now < until:
            rt.idle_due = until
            return None
    rt.idle_due = None
    return (D.WAIT, "Idle", None)


def _last(s: DestinationSummary) -> str:
    """The destination's last host error, for a status reason (what an operator must fix)."""
    return f"; last error on {s.last_error}" if s.last_error else ""


def _expire(
    state: SchedulerState,
    rt: DestinationRuntime,
    src: str,
    now: datetime,
    out: list[Event],
    touched: set[str],
    purge_after: timedelta,
) -> None:
    """Fail pending transfers whose lifetime has passed; forget finished ones (purge)."""
    heap, keep = rt.expiry, []
    while heap and heap[0][0] <= now:
        node = heapq.heappop(heap)
        e = state.transfers.get(node[1])
        if e is None or e.expiry_time != node[0]:
            continue  # stale node
        if e.status not in PENDING:
            if e.status in FINISHED:
                heapq.heappush(rt.purgeable, (e.expiry_time + purge_after, e.transfer_id))
            continue
        keep.append(node)
        if e.transfer_id not in touched:
            touched.add(e.transfer_id)
            out.append(outputs.expired(src, now, e))
    for node in keep:
        heapq.heappush(heap, node)
    purgeable = rt.purgeable
    while purgeable and purgeable[0][0] <= now:
        when, tid = heapq.heappop(purgeable)
        e = state.transfers.get(tid)
        if (
            e is not None
            and e.status in FINISHED
            and e.expiry_time + purge_after == when
            and tid not in touched
        ):
            state.purge(e)  # past its lifetime: a requeue would only fail it again


def _reschedule(
    state: SchedulerState,
    rt: DestinationRuntime,
    src: str,
    now: datetime,
    out: list[Event],
    touched: set[str],
) -> None:
    """Reschedule after recovery: once a retried transfer (or the first since a restart of
    the destination) got through, transfers delayed before then (max start reached while the
    hosts were failing) are due again at once."""
    recovered = rt.summary.recovered_at
    if recovered is None or rt.rescheduled == recovered:
        return
    before = len(out)
    for queue_time, tid in sorted(rt.delayed):
        e = state.transfers.get(tid)
        if (
            e is None
            or e.status not in ORDERABLE
            or e.queue_time != queue_time  # stale heap node
            or queue_time <= now
            or e.delayed_at is None
            or e.delayed_at >= recovered
            or tid in touched
        ):
            continue
        touched.add(tid)
        reason = f"Rescheduled after the destination recovered at {recovered:%Y-%m-%d %H:%M:%S}"
        out.append(outputs.requeued(src, now, e, reason, now))
    if len(out) == before:
        rt.rescheduled = recovered  # nothing delayed predates it: skip the scan until it moves


def _order(
    state: SchedulerState,
    rt: DestinationRuntime,
    settings: SchedulerSettings,
    now: datetime,
    host_id: str,
    answerer: Answerer,
) -> int:
    """Order the best ready transfers within the free connections; returns how many."""
    out, touched, ordered = answerer.out, answerer.touched, answerer.ordered
    cfg = rt.config
    host = state.hosts[host_id]
    assert cfg is not None
    transfers, ready, delayed = state.transfers, rt.ready, rt.delayed
    rt.staging_due = None  # set again by the transfers still waiting for their staged copy
    while delayed and delayed[0][0] <= now:  # delayed transfers whose time has come
        queue_time, tid = heapq.heappop(delayed)
        e = transfers.get(tid)
        if e is not None and e.status in ORDERABLE and e.queue_time == queue_time:
            heapq.heappush(ready, (e.priority, queue_time, tid))
    free_dest = _UNLIMITED if cfg.max_connections < 0 else cfg.max_connections - len(rt.running)
    # every destination's attempts on it, with the orders decided a moment ago in this decide
    on_host = state.host_running.get(host_id, 0) + ordered.get(host_id, 0)
    free_host = _UNLIMITED if host.max_connections < 0 else host.max_connections - on_host
    free = min(free_dest, free_host, settings.max_orders_per_visit)
    popped: list[tuple[int, datetime, str]] = []
    seen: set[str] = set()
    started = 0
    src = settings.source
    while free > 0 and ready:
        node = heapq.heappop(ready)
        priority, queue_time, tid = node
        e = transfers.get(tid)
        if (
            e is None
            or e.status not in ORDERABLE
            or e.priority != priority
            or e.queue_time != queue_time
            or tid in seen
        ):
            continue  # stale or duplicate node
        if queue_time > now:
            heapq.heappush(delayed, (queue_time, tid))
            continue
        seen.add(tid)
        popped.append(node)
        if tid in touched or e.expiry_time <= now:
            continue
        touched.add(tid)
        if rt.by_target is not None and _held_as_duplicate(state, rt, e, src, now, out, touched):
            continue
        if 0 < cfg.max_start <= e.start_count:
            if 0 < cfg.max_requeue <= e.requeue_count:
                out.append(outputs.abandoned(src, now, e, outputs.MAX_REQUEUE))
            else:
                until = now + timedelta(milliseconds=cfg.start_frequency_ms)
                reason = f"Maximum start limit reached (delayed until {until:%Y-%m-%d %H:%M:%S})"
                out.append(outputs.requeued(src, now, e, reason, until, e.requeue_count + 1))
            continue
        group = _group_of(state, rt, e, src, now, settings, out)
        if group is None:
            continue  # waits for its pre-staged copy (its timer is ``rt.staging_due``)
        out.extend(outputs.orders(src, now, e, cfg, host, state.files.get(e.data_file_id), group))
        free -= 1
        started += 1
        ordered[host_id] = ordered.get(host_id, 0) + 1
    for node in popped:
        heapq.heappush(ready, node)
    return started


def _held_as_duplicate(
    state: SchedulerState,
    rt: DestinationRuntime,
    e: TransferEntry,
    src: str,
    now: datetime,
    out: list[Event],
    touched: set[str],
) -> bool:
    """Apply the destination's duplicate rule to ``e`` about to be ordered: hold it if another
    transfer of its target wins, else hold the waiting ones it beats; whether ``e`` is held."""
    assert rt.config is not None
    rule = duplicates.rule_for(rt.config, e.target)
    others = state.same_target(rt, e) if rule is not None else []
    if rule is None or not others:
        return False
    kept = duplicates.winner(rule, e, others)
    if kept is not e:
        out.append(outputs.held(src, now, e, duplicates.reason(kept), "scheduler", None))
        return True
    for other in others:
        if other.status in ORDERABLE and other.transfer_id not in touched:
            touched.add(other.transfer_id)
            out.append(outputs.held(src, now, other, duplicates.reason(e), "scheduler", None))
    return False


def _due(state: SchedulerState, rt: DestinationRuntime, now: datetime) -> datetime | None:
    """The next moment this destination needs a visit without any new event."""
    cfg = rt.config
    if cfg is None:
        return None
    s = rt.summary
    times: list[datetime] = []
    if rt.expiry:
        times.append(rt.expiry[0][0])
    if rt.delayed:
        times.append(rt.delayed[0][0])
    if rt.purgeable:
        times.append(rt.purgeable[0][0])
    if s.sleep_until is not None:
        times.append(s.sleep_until)
    if s.reset_time is not None:
        times.append(s.reset_time)
    if rt.idle_due is not None:
        times.append(rt.idle_due)
    if rt.staging_due is not None:
        times.append(rt.staging_due)
    if s.failures:  # only the current host's retry matters
        order = failover.host_order(rt.associations, state.hosts, s)
        current = failover.current_host(s, order)
        failure = s.failures.get(current) if current is not None else None
        if failure is not None:
            times.append(failure.next_try)
    if cfg.active_windows and rt.orderable:
        opening = windows.next_opening(cfg.active_windows, now)
        if opening is not None:
            times.append(opening)
    later = [t for t in times if t > now]
    return min(later) if later else None
