"""Object ids and metadata: sortable unique ids, safe validation, lossless JSON sidecars."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from store.checksums import checksums_of
from store.errors import ObjectNotFound, StoreError
from store.objects import ObjectId, ObjectMeta, fanout, new_object_id, object_id


def test_ids_sort_by_creation_time() -> None:
    """An id made at a later millisecond sorts after one made earlier."""
    earlier = new_object_id(now_ms=1_700_000_000_000)
    later = new_object_id(now_ms=1_700_000_000_001)
    assert earlier < later
    assert len(earlier) == 32


def test_ids_are_unique() -> None:
    """Ids made in the same millisecond still differ (80 random bits)."""
    assert len({new_object_id(now_ms=5) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "A" * 32, "0" * 31, "0" * 33, "g" * 32])
def test_malformed_ids_refused(bad: str) -> None:
    """Anything but 32 lowercase hex digits is refused before it can become a path."""
    with pytest.raises(ObjectNotFound):
        object_id(bad)


def test_fanout_uses_the_random_tail() -> None:
    """The fan-out directories come from the id's last four hex digits."""
    assert fanout(ObjectId("0" * 28 + "abcd")) == "cd/ab"


def test_meta_json_round_trip() -> None:
    """A sidecar written and read back gives an equal ObjectMeta."""
    meta = ObjectMeta(
        id=new_object_id(),
        name="2026/11/27/é.grib",
        size=3,
        created=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        checksums=checksums_of(b"abc", md5=True, sha512=True),
        source="acq:host",
        content_type="application/x-grib",
        metadata={"k": "v"},
        locations=("file:///var/store", "s3://b/p"),
    )
    assert ObjectMeta.from_json(meta.to_json()) == meta


def test_meta_is_immutable() -> None:
    """User metadata of a stored ObjectMeta cannot be changed in place."""
    meta = ObjectMeta(
        id=new_object_id(),
        name="n",
        size=0,
        created=datetime.now(UTC),
        checksums=checksums_of(b""),
        metadata={"k": "v"},
    )
    with pytest.raises(TypeError):
        meta.metadata["k"] = "w"  # type: ignore[index]


def test_unreadable_sidecar_is_a_store_error() -> None:
    """A sidecar that is not our JSON raises StoreError, not a bare parsing error."""
    with pytest.raises(StoreError):
        ObjectMeta.from_json(b"{not json")
