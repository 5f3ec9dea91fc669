"""The events a mover publishes: about an order (started, succeeded, failed, interrupted) and
about itself (heartbeat, stopped).

Every outcome carries the order's attempt (the scheduler ignores outcomes of a superseded
attempt), the host and this mover; its envelope correlates to the transfer and is caused by the
order's event, so one grep on the transfer id follows it from order to outcome. A failure
carries whose problem it was (``protocols.base.FAULTS``): the scheduler decides from that
whether to count it against the host, end the transfer, or just requeue it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import datetime

from bus.events import Envelope, envelope
from bus.events.movers import MoverHeartbeat, MoverStopped
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    TransferFailed,
    TransferInterrupted,
    TransferStarted,
    TransferSucceeded,
)
from consumers.movers.config import MoverConfig
from consumers.movers.delivery import Delivered
from protocols.base import fault_of

MAX_MESSAGE = 2000  # characters of an error message kept in the event


def _envelope(order: TransferOrdered, source: str) -> Envelope:
    return envelope(source, order.transfer_id, order.envelope.event_id)


def started(
    order: TransferOrdered, source: str, mover: str, temporary: str | None = None
) -> TransferStarted:
    """The mover took the order and is about to move bytes (EXEC) through ``temporary``."""
    return TransferStarted(
        envelope=_envelope(order, source),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        host_id=order.host.id,
        mover_id=mover,
        temporary_path=temporary,
    )


def succeeded(
    order: TransferOrdered, source: str, mover: str, done: Delivered
) -> TransferSucceeded:
    """The file is at its final name and verified (DONE)."""
    return TransferSucceeded(
        envelope=_envelope(order, source),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        host_id=order.host.id,
        mover_id=mover,
        remote_path=done.remote_path,
        bytes_sent=done.bytes_sent,
        duration_ms=int(done.duration_s * 1000),
        bytes_per_second=done.bytes_sent / done.duration_s if done.duration_s > 0 else 0.0,
        verification=done.verification,
        md5=done.md5,
        compression=order.compression,
    )


def failed(
    order: TransferOrdered,
    source: str,
    mover: str,
    error: BaseException,
    retriable: bool,
    seconds: float,
    temporary: str | None = None,
) -> TransferFailed:
    """The attempt failed; ``retriable`` comes from the error's flag and ``fault`` from its class
    (``protocols.base.FAULTS``), never from its text; ``temporary`` is the name it wrote under
    (the next attempt removes it if left)."""
    return TransferFailed(
        envelope=_envelope(order, source),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        host_id=order.host.id,
        mover_id=mover,
        error_class=type(error).__name__,
        message=str(error)[:MAX_MESSAGE],
        retriable=retriable,
        duration_ms=int(seconds * 1000),
        fault=fault_of(error),
        temporary_path=temporary,
    )


def interrupted(
    order: TransferOrdered, source: str, mover: str, reason: str
) -> TransferInterrupted:
    """The attempt was cut short by this mover (INTR); the scheduler requeues it."""
    return TransferInterrupted(
        envelope=_envelope(order, source),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        reason=reason,
        mover_id=mover,
    )


def heartbeat(
    config: MoverConfig, started_at: datetime, running: Sequence[str], rate: float
) -> MoverHeartbeat:
    """This mover is alive: its capacity, what it runs and how fast it sends."""
    return MoverHeartbeat(
        envelope=envelope(config.source, config.mover_id),
        mover_id=config.mover_id,
        transfer_group=config.transfer_group,
        capacity=config.capacity,
        running=len(running),
        started_at=started_at,
        running_transfers=tuple(running),
        bytes_per_second=rate,
        hostname=socket.gethostname(),
    )


def stopped(config: MoverConfig, interrupted_count: int) -> MoverStopped:
    """This mover left its group after reporting its running transfers interrupted."""
    return MoverStopped(
        envelope=envelope(config.source, config.mover_id),
        mover_id=config.mover_id,
        transfer_group=config.transfer_group,
        reason=f"stopped; {interrupted_count} running transfer(s) interrupted",
    )
