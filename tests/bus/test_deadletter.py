"""``decode_record``: the one reading of a consumed record, or the reason it is poison."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bus import codec
from bus.deadletter import Poison, decode_record
from bus.events.deadletter import DeadLetterReason
from bus.events.movers import MoverHeartbeat
from bus.events.transfers import TransferQueued
from bus.topics import TRANSFERS
from tests.bus.samples import sample


@dataclass(frozen=True)
class Record:
    """The fields of a consumed record that decoding reads."""

    topic: str
    value: bytes | None
    headers: list[tuple[str, bytes]]


def test_a_good_record_decodes_to_its_event() -> None:
    """An event of a type its topic allows comes back as that event."""
    event = sample(TransferQueued)
    got = decode_record(Record(TRANSFERS, codec.encode(event), codec.headers(event)))
    assert got == event


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00garbage", DeadLetterReason.UNDECODABLE),
        (b"", DeadLetterReason.UNDECODABLE),
        (None, DeadLetterReason.UNDECODABLE),
        (b"\xc3\x01" + b"\x01" * 8 + b"body", DeadLetterReason.UNKNOWN_SCHEMA),
    ],
)
def test_unreadable_bytes_are_poison_with_their_reason(
    value: bytes | None, reason: DeadLetterReason
) -> None:
    """Garbage, an empty or missing value and an unknown fingerprint are poison, not a crash."""
    got = decode_record(Record(TRANSFERS, value, []))
    assert isinstance(got, Poison)
    assert got.reason == reason
    assert got.message


def test_a_type_not_allowed_on_its_topic_is_poison() -> None:
    """A mover heartbeat on the transfers topic is refused, naming the type and the topic."""
    event = sample(MoverHeartbeat)
    got = decode_record(Record(TRANSFERS, codec.encode(event), codec.headers(event)))
    assert isinstance(got, Poison)
    assert got.reason == DeadLetterReason.TYPE_NOT_ALLOWED
    assert got.event_type == codec.event_type(event)
    assert TRANSFERS in got.message
