"""The compiled murmur2 key hash gives the partitions Kafka's own clients would choose."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as reference

native = pytest.importorskip("ecpds_avro")


def test_compiled_murmur2_equals_aiokafkas_for_every_length() -> None:
    """Random keys of 0 to 64 bytes (every tail length) hash the same as aiokafka's murmur2."""
    rng = random.Random(7)
    keys = [rng.randbytes(n) for n in range(65) for _ in range(20)]
    keys += [b"21", b"", "destination-é".encode(), b"\xff" * 7]
    assert [native.murmur2(k) for k in keys] == [reference(k) for k in keys]
