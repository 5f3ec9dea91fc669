"""Projection of the transfer lifecycle and destination status (topic ``ecpds.transfers``).

Every transfer event appends one ``transfer_history`` row (the timeline) and moves the
``transfers`` row; the status counts per destination follow through the trigger on
``transfers`` (old status decremented, new incremented, same transaction).

Rules kept here, mirroring the scheduler (``consumers/scheduler/transitions.py``):
- an outcome (succeeded, failed, interrupted) counts only for the transfer's current attempt
  while it runs; a superseded attempt's outcome is kept in the history and changes nothing else;
- a failure does not change the status (the scheduler answers with requeue, stop or abandon);
- a row first seen through a later event is created with what that event knows (``status``
  stays null, hence uncounted, until a status-setting event arrives).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from bus.events import transfers as t
from projections.handlers import outcomes, products
from projections.handlers.base import FREE, Handler, Rule, Write, registrar, text
from projections.handlers.timeline import history

HANDLERS: dict[str, Handler] = {}
RULES: dict[str, Rule] = {
    "transfer_history": FREE,
    "transfers": ("transfer", 1),
    "destinations": ("destination", 1),
    "destination_minutes": FREE,
    "hosts": FREE,  # counters and "greatest" times only
}
on = registrar(HANDLERS, RULES)

# A status move: creates the row if needed; ``status_reason``/``status_actor`` say why.
_MOVE: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, status, status_reason, status_actor,"
    " updated_at) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (transfer_id) DO UPDATE SET status = EXCLUDED.status,"
    " status_reason = EXCLUDED.status_reason, status_actor = EXCLUDED.status_actor,"
    " updated_at = EXCLUDED.updated_at"
)


def _move(event: Any, status: str, reason: str | None, actor: str | None) -> Sequence[Write]:
    env = event.envelope
    return (
        history(
            event, event.transfer_id, event.destination, status=status, message=reason, actor=actor
        ),
        Write(
            _MOVE,
            (event.transfer_id, event.destination, status, reason, actor, env.occurred_at),
        ),
    )


# --- queueing and scheduling ---------------------------------------------------------------------

_QUEUED: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, data_file_id, target, status, priority,"
    " queue_time, scheduled_time, expiry_time, size, alias_of, identity, file_instance, notify,"
    " asap, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (transfer_id) DO UPDATE SET destination = EXCLUDED.destination,"
    " data_file_id = EXCLUDED.data_file_id, target = EXCLUDED.target, status = EXCLUDED.status,"
    " priority = EXCLUDED.priority, queue_time = EXCLUDED.queue_time,"
    " scheduled_time = EXCLUDED.scheduled_time, expiry_time = EXCLUDED.expiry_time,"
    " size = EXCLUDED.size, alias_of = EXCLUDED.alias_of, identity = EXCLUDED.identity,"
    " file_instance = EXCLUDED.file_instance, notify = EXCLUDED.notify, asap = EXCLUDED.asap,"
    " updated_at = EXCLUDED.updated_at"
)


@on(t.TransferQueued)
def _queued(event: t.TransferQueued) -> Sequence[Write]:
    status = text(event.status)
    return (
        history(event, event.transfer_id, event.destination, status=status, size=event.size),
        Write(
            _QUEUED,
            (
                event.transfer_id,
                event.destination,
                event.data_file_id,
                event.target,
                status,
                event.priority,
                event.queue_time,
                event.scheduled_time,
                event.expiry_time,
                event.size,
                event.alias_of,
                event.identity,
                event.file_instance,
                event.notify,
                event.asap,
                event.envelope.occurred_at,
            ),
        ),
        outcomes.ensure_destination(event.destination),
        *products.queued(event),  # the product's row, when its file names one
    )


_SCHEDULED: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, attempt, host_id, updated_at)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (transfer_id) DO UPDATE SET"
    " attempt = EXCLUDED.attempt, host_id = EXCLUDED.host_id, updated_at = EXCLUDED.updated_at"
    " WHERE t.attempt <= EXCLUDED.attempt"
)


@on(t.TransferScheduled)
def _scheduled(event: t.TransferScheduled) -> Sequence[Write]:
    return (
        history(
            event, event.transfer_id, event.destination, attempt=event.attempt, host=event.host_id
        ),
        Write(
            _SCHEDULED,
            (
                event.transfer_id,
                event.destination,
                event.attempt,
                event.host_id,
                event.envelope.occurred_at,
            ),
        ),
    )


# --- attempts and their outcomes ------------------------------------------------------------------

_STARTED: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, status, attempt, host_id, mover_id,"
    " start_count, started_at, updated_at) VALUES (%s, %s, 'EXEC', %s, %s, %s, 1, %s, %s)"
    " ON CONFLICT (transfer_id) DO UPDATE SET status = 'EXEC', attempt = EXCLUDED.attempt,"
    " host_id = EXCLUDED.host_id, mover_id = EXCLUDED.mover_id,"
    " start_count = t.start_count + 1, started_at = EXCLUDED.started_at, finished_at = NULL,"
    " status_reason = NULL, status_actor = NULL, updated_at = EXCLUDED.updated_at"
    " WHERE t.attempt <= EXCLUDED.attempt"
)


@on(t.TransferStarted)
def _started(event: t.TransferStarted) -> Sequence[Write]:
    at = event.envelope.occurred_at
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            status="EXEC",
            attempt=event.attempt,
            host=event.host_id,
            mover=event.mover_id,
        ),
        Write(
            _STARTED,
            (
                event.transfer_id,
                event.destination,
                event.attempt,
                event.host_id,
                event.mover_id,
                at,
                at,
            ),
        ),
    )


_SUCCEEDED: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, status, attempt, host_id, mover_id,"
    " finished_at, bytes_sent, duration_ms, bytes_per_second, verification, remote_path, md5,"
    " updated_at) VALUES (%s, %s, 'DONE', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (transfer_id) DO UPDATE SET status = 'DONE', attempt = EXCLUDED.attempt,"
    " host_id = EXCLUDED.host_id, mover_id = EXCLUDED.mover_id,"
    " finished_at = EXCLUDED.finished_at, bytes_sent = EXCLUDED.bytes_sent,"
    " duration_ms = EXCLUDED.duration_ms, bytes_per_second = EXCLUDED.bytes_per_second,"
    " verification = EXCLUDED.verification, remote_path = EXCLUDED.remote_path,"
    " md5 = EXCLUDED.md5, status_reason = NULL, status_actor = NULL,"
    # delivered: an earlier attempt's error is history now (transfer_history keeps it)
    " last_error = NULL, last_error_at = NULL,"
    " updated_at = EXCLUDED.updated_at"
    # only the current attempt while it runs (or a later one nobody has seen start)
    " WHERE t.attempt < EXCLUDED.attempt"
    " OR (t.attempt = EXCLUDED.attempt AND (t.status IS NULL OR t.status = 'EXEC'))"
)


@on(t.TransferSucceeded)
def _succeeded(event: t.TransferSucceeded) -> Sequence[Write]:
    at = event.envelope.occurred_at
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            status="DONE",
            attempt=event.attempt,
            host=event.host_id,
            mover=event.mover_id,
            message=f"verified: {text(event.verification)}",
            size=event.bytes_sent,
        ),
        Write(
            _SUCCEEDED,
            (
                event.transfer_id,
                event.destination,
                event.attempt,
                event.host_id,
                event.mover_id,
                at,
                event.bytes_sent,
                event.duration_ms,
                event.bytes_per_second,
                text(event.verification),
                event.remote_path,
                event.md5,
                at,
            ),
        ),
        Write(
            outcomes.DESTINATION_SUCCESS,
            (event.destination, at, event.transfer_id, event.host_id),
        ),
        Write(outcomes.MINUTE, (event.destination, at, 1, event.bytes_sent, 0)),
        outcomes.host_outcome(
            event.host_id, at, ok=True, size=event.bytes_sent, rate=event.bytes_per_second
        ),
    )


_FAILED: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, attempt, host_id, mover_id,"
    " last_error, last_error_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (transfer_id) DO UPDATE SET last_error = EXCLUDED.last_error,"
    " last_error_at = EXCLUDED.last_error_at, updated_at = EXCLUDED.updated_at"
    " WHERE t.attempt < EXCLUDED.attempt"
    " OR (t.attempt = EXCLUDED.attempt AND (t.status IS NULL OR t.status = 'EXEC'))"
)


@on(t.TransferFailed)
def _failed(event: t.TransferFailed) -> Sequence[Write]:
    at = event.envelope.occurred_at
    error = f"{event.error_class}: {event.message}"
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            attempt=event.attempt,
            host=event.host_id,
            mover=event.mover_id,
            message=error,
            size=event.bytes_sent,
        ),
        Write(
            _FAILED,
            (
                event.transfer_id,
                event.destination,
                event.attempt,
                event.host_id,
                event.mover_id,
                error,
                at,
                at,
            ),
        ),
        Write(
            outcomes.DESTINATION_ERROR,
            (event.destination, at, error, event.transfer_id, event.host_id),
        ),
        Write(outcomes.MINUTE, (event.destination, at, 0, 0, 1)),
        outcomes.host_outcome(event.host_id, at, ok=False, error=error),
    )


_INTERRUPTED: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, status, attempt, status_reason,"
    " updated_at) VALUES (%s, %s, 'INTR', %s, %s, %s) ON CONFLICT (transfer_id) DO UPDATE SET"
    " status = 'INTR', status_reason = EXCLUDED.status_reason, status_actor = NULL,"
    " updated_at = EXCLUDED.updated_at WHERE t.attempt <= EXCLUDED.attempt"
)


@on(t.TransferInterrupted)
def _interrupted(event: t.TransferInterrupted) -> Sequence[Write]:
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            status="INTR",
            attempt=event.attempt,
            mover=event.mover_id,
            message=event.reason,
        ),
        Write(
            _INTERRUPTED,
            (
                event.transfer_id,
                event.destination,
                event.attempt,
                event.reason,
                event.envelope.occurred_at,
            ),
        ),
    )


# --- scheduler and operator decisions -----------------------------------------------------------

_REQUEUED: LiteralString = (
    "INSERT INTO transfers AS t (transfer_id, destination, status, status_reason, status_actor,"
    " requeue_count, queue_time, updated_at) VALUES (%s, %s, 'RETR', %s, %s, %s, %s, %s)"
    " ON CONFLICT (transfer_id) DO UPDATE SET status = 'RETR',"
    " status_reason = EXCLUDED.status_reason, status_actor = EXCLUDED.status_actor,"
    " requeue_count = EXCLUDED.requeue_count, queue_time = EXCLUDED.queue_time,"
    " updated_at = EXCLUDED.updated_at"
)


@on(t.TransferRequeued)
def _requeued(event: t.TransferRequeued) -> Sequence[Write]:
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            status="RETR",
            message=event.reason,
            actor=event.actor,
        ),
        Write(
            _REQUEUED,
            (
                event.transfer_id,
                event.destination,
                event.reason,
                event.actor,
                event.requeue_count,
                event.queue_time,
                event.envelope.occurred_at,
            ),
        ),
    )


@on(t.TransferHeld)
def _held(event: t.TransferHeld) -> Sequence[Write]:
    return _move(event, "HOLD", event.reason, event.actor)


@on(t.TransferReleased)
def _released(event: t.TransferReleased) -> Sequence[Write]:
    return _move(event, "WAIT", None, event.actor)


@on(t.TransferStopped)
def _stopped(event: t.TransferStopped) -> Sequence[Write]:
    return _move(event, "STOP", event.reason, event.actor)


@on(t.TransferExpired)
def _expired(event: t.TransferExpired) -> Sequence[Write]:
    return _move(event, "FAIL", event.reason, None)


@on(t.TransferAbandoned)
def _abandoned(event: t.TransferAbandoned) -> Sequence[Write]:
    return _move(event, "FAIL", event.reason, None)


@on(t.TransferDownloaded)
def _downloaded(event: t.TransferDownloaded) -> Sequence[Write]:
    at = event.envelope.occurred_at
    reason = f"downloaded over {event.protocol}"
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            status="DONE",
            message=reason,
            size=event.bytes_sent,
            actor=event.user,
        ),
        Write(_MOVE, (event.transfer_id, event.destination, "DONE", reason, event.user, at)),
        Write(outcomes.DESTINATION_SUCCESS, (event.destination, at, event.transfer_id, None)),
        Write(outcomes.MINUTE, (event.destination, at, 1, event.bytes_sent, 0)),
    )


@on(t.TransferPriorityChanged)
def _priority(event: t.TransferPriorityChanged) -> Sequence[Write]:
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            message=f"priority {event.old_priority} -> {event.new_priority}",
            actor=event.actor,
        ),
        Write(
            "INSERT INTO transfers AS t (transfer_id, destination, priority, updated_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (transfer_id) DO UPDATE SET"
            " priority = EXCLUDED.priority, updated_at = EXCLUDED.updated_at",
            (
                event.transfer_id,
                event.destination,
                event.new_priority,
                event.envelope.occurred_at,
            ),
        ),
    )


@on(t.TransferLifetimeExtended)
def _lifetime(event: t.TransferLifetimeExtended) -> Sequence[Write]:
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            message=f"expiry {event.old_expiry_time.isoformat()} ->"
            f" {event.new_expiry_time.isoformat()}",
            actor=event.actor,
        ),
        Write(
            "INSERT INTO transfers AS t (transfer_id, destination, expiry_time, updated_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (transfer_id) DO UPDATE SET"
            " expiry_time = EXCLUDED.expiry_time, updated_at = EXCLUDED.updated_at",
            (
                event.transfer_id,
                event.destination,
                event.new_expiry_time,
                event.envelope.occurred_at,
            ),
        ),
    )


# -- continental movers: the transfer's timeline says where its copy was staged and why it left
# its regional group (the order's own row then names the group it went to)


@on(t.TransferFellBack)
def _fell_back(event: t.TransferFellBack) -> Sequence[Write]:
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            attempt=event.attempt,
            message=f"transfer group {event.from_group} -> {event.to_group}: {event.reason}",
        ),
    )


@on(t.DataFileStaged)
def _staged(event: t.DataFileStaged) -> Sequence[Write]:
    # the row of the file's transfer to this destination, named as the ingest names it
    # (``<data file id>-<destination>``); a transfer queued by an alias has no such row
    return (
        history(
            event,
            f"{event.data_file_id}-{event.destination}",
            event.destination,
            message=f"staged in {event.store} (transfer group {event.transfer_group})"
            f" from {event.from_store or 'the default store'} in {event.duration_ms} ms",
            size=event.size,
        ),
    )
