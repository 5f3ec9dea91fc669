"""Events the janitor consumes, built with sensible defaults (override what a test is about)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from bus.events.base import Envelope, TransferStatus
from bus.events.datafiles import Checksums, DataFileRegistered, DataFileStored
from bus.events.transfers import (
    TransferHeld,
    TransferQueued,
    TransferScheduled,
    TransferStarted,
    TransferStopped,
    TransferSucceeded,
    Verification,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIFETIME = timedelta(hours=2)


def env(correlation: str, at: datetime = T0) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()), occurred_at=at, source="test", correlation_id=correlation
    )


def registered(
    dfid: str, destination: str = "site-a", expiry: datetime = T0 + LIFETIME
) -> DataFileRegistered:
    return DataFileRegistered(
        envelope=env(dfid),
        data_file_id=dfid,
        destination=destination,
        target=f"{dfid}.dat",
        transfer_group="default",
        expiry_time=expiry,
    )


def stored(dfid: str, store: str = "file:///store", size: int = 10) -> DataFileStored:
    return DataFileStored(
        envelope=env(dfid),
        data_file_id=dfid,
        guid=dfid,
        store=store,
        location=dfid,
        size=size,
        checksums=Checksums(adler32="00000001"),
        duration_ms=1,
    )


def queued(
    dfid: str,
    destination: str = "site-a",
    status: TransferStatus = TransferStatus.WAIT,
    expiry: datetime = T0 + LIFETIME,
) -> TransferQueued:
    return TransferQueued(
        envelope=env(dfid),
        transfer_id=f"{dfid}-{destination}",
        destination=destination,
        data_file_id=dfid,
        target=f"{dfid}.dat",
        status=status,
        priority=99,
        queue_time=T0,
        expiry_time=expiry,
        size=10,
    )


def scheduled(dfid: str, destination: str = "site-a", attempt: int = 1) -> TransferScheduled:
    return TransferScheduled(
        envelope=env(dfid),
        transfer_id=f"{dfid}-{destination}",
        destination=destination,
        attempt=attempt,
        host_id="h1",
        transfer_group="default",
    )


def started(dfid: str, destination: str = "site-a", attempt: int = 1) -> TransferStarted:
    return TransferStarted(
        envelope=env(dfid),
        transfer_id=f"{dfid}-{destination}",
        destination=destination,
        attempt=attempt,
        host_id="h1",
        mover_id="m1",
    )


def succeeded(dfid: str, destination: str = "site-a", attempt: int = 1) -> TransferSucceeded:
    return TransferSucceeded(
        envelope=env(dfid),
        transfer_id=f"{dfid}-{destination}",
        destination=destination,
        attempt=attempt,
        host_id="h1",
        mover_id="m1",
        remote_path=f"/in/{dfid}.dat",
        bytes_sent=10,
        duration_ms=1,
        bytes_per_second=10.0,
        verification=Verification.SIZE,
    )


def stopped(dfid: str, destination: str = "site-a") -> TransferStopped:
    return TransferStopped(
        envelope=env(dfid),
        transfer_id=f"{dfid}-{destination}",
        destination=destination,
        reason="operator",
    )


def held(dfid: str, destination: str = "site-a") -> TransferHeld:
    return TransferHeld(
        envelope=env(dfid),
        transfer_id=f"{dfid}-{destination}",
        destination=destination,
        reason="operator",
    )
