"""`ecpds audit` tells one file's story from the Kafka log, and nothing else's."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bus.events import envelope
from bus.events.datafiles import DataFileRegistered, DataFileStored
from bus.events.transfers import TransferFailed, TransferQueued, TransferStarted, TransferSucceeded
from bus.publisher import Publisher
from bus.topics import DATAFILES, TRANSFERS, apply_topics, catalogue
from tests.bus.samples import sample
from tests.cli.test_commands import ecpds

pytestmark = pytest.mark.kafka


def story_of(dfid: str, destination: str) -> list[tuple[str, str, Any]]:
    """Registered, stored, queued, started, failed, started again, succeeded."""
    tid = f"{dfid}-{destination}"
    t0 = datetime.now(UTC)

    def env(n: int) -> Any:
        return dataclasses.replace(
            envelope("test", dfid), occurred_at=t0 + timedelta(milliseconds=n)
        )

    return [
        (
            DATAFILES,
            dfid,
            sample(DataFileRegistered, envelope=env(1), data_file_id=dfid, destination=destination),
        ),
        (DATAFILES, dfid, sample(DataFileStored, envelope=env(2), data_file_id=dfid)),
        (
            TRANSFERS,
            destination,
            sample(
                TransferQueued,
                envelope=env(3),
                transfer_id=tid,
                data_file_id=dfid,
                destination=destination,
            ),
        ),
        (
            TRANSFERS,
            destination,
            sample(
                TransferStarted,
                envelope=env(4),
                transfer_id=tid,
                destination=destination,
                attempt=1,
            ),
        ),
        (
            TRANSFERS,
            destination,
            sample(
                TransferFailed,
                envelope=env(5),
                transfer_id=tid,
                destination=destination,
                attempt=1,
                message="530 Login incorrect",
            ),
        ),
        (
            TRANSFERS,
            destination,
            sample(
                TransferStarted,
                envelope=env(6),
                transfer_id=tid,
                destination=destination,
                attempt=2,
            ),
        ),
        (
            TRANSFERS,
            destination,
            sample(
                TransferSucceeded,
                envelope=env(7),
                transfer_id=tid,
                destination=destination,
                attempt=2,
            ),
        ),
    ]


async def test_audit_prints_the_whole_story_of_a_data_file_and_of_a_transfer(kafka: str) -> None:
    """Every event of the file and its transfer comes back in time order; others' do not."""
    await apply_topics(kafka, catalogue())
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    async with Publisher(kafka) as publisher:
        for topic, key, event in story_of(mine, "audit-site") + story_of(other, "audit-site"):
            await publisher.publish(topic, key, event)

    result = await asyncio.to_thread(ecpds, "audit", mine, "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["event_type"].rpartition(".")[2] for r in rows] == [
        "DataFileRegistered",
        "DataFileStored",
        "TransferQueued",
        "TransferStarted",
        "TransferFailed",
        "TransferStarted",
        "TransferSucceeded",
    ]
    assert rows[4]["event"]["message"] == "530 Login incorrect"
    assert other not in result.stdout

    by_transfer = await asyncio.to_thread(ecpds, "audit", f"{mine}-audit-site")
    assert by_transfer.returncode == 0
    assert "TransferFailed" in by_transfer.stdout
    assert "DataFileStored" not in by_transfer.stdout  # a transfer's story is its own


async def test_audit_of_an_unknown_id_says_so(kafka: str) -> None:
    """An id no event names exits 1 with a clear message."""
    await apply_topics(kafka, catalogue())
    result = await asyncio.to_thread(ecpds, "audit", "no-such-file")
    assert result.returncode == 1
    assert "no event in the log names no-such-file" in result.stdout
