"""Types of the compiled module (src/lib.rs)."""

from collections.abc import Iterable
from typing import Any

class Codec:
    """Encoder and decoder of the events of one catalogue."""

    def __init__(
        self,
        records: Iterable[tuple[str, type, bool, tuple[str, ...], tuple[tuple[Any, ...], ...]]],
        enums: Iterable[tuple[str, tuple[str, ...], tuple[object, ...]]],
        events: Iterable[tuple[type, bytes, int]],
        error: type[Exception],
    ) -> None: ...
    def encode(self, event: object, /) -> bytes:
        """The single-object encoding of an event (``TypeError`` for a class it does not know)."""
    def decode(self, data: bytes, /) -> Any:
        """The event in a payload, or ``None`` when the payload is not one of its events."""

def murmur2(data: bytes, /) -> int:
    """Kafka's murmur2 hash of a key, unsigned 32-bit (as aiokafka's ``partitioner.murmur2``)."""
