"""The S3 door's multipart uploads kept on disk: read back at start, the stale dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from producers.portal.s3parts import KEEP, Multiparts


async def _bytes(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_uploads_are_read_back_and_the_stale_or_unreadable_dropped(tmp_path: Path) -> None:
    """A new ``Multiparts`` on the same folder (mode 0700: upload ids are not listed to
    others) finds an upload and its landed parts (ETag and size as sent); one older than
    ``KEEP``, or whose manifest cannot be read, is deleted."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    first = Multiparts(tmp_path / "multipart", now)
    pending = first.create("u", "b", "k", now)
    assert (tmp_path / "multipart").stat().st_mode & 0o777 == 0o700
    part = await first.put_part(pending, 2, _bytes(b"x" * 100), now)
    (tmp_path / "multipart" / "not-an-upload").mkdir()
    again = Multiparts(tmp_path / "multipart", now + timedelta(hours=1))
    assert again.resumed == 1
    found = again.find(pending.upload_id, "u", "b", "k")
    assert [(p.number, p.size, p.etag) for p in found.parts.values()] == [(2, 100, part.etag)]
    assert found.parts[2].path.read_bytes() == b"x" * 100
    assert not (tmp_path / "multipart" / "not-an-upload").exists()
    later = Multiparts(tmp_path / "multipart", now + KEEP + timedelta(seconds=1))
    assert later.resumed == 0
    assert list((tmp_path / "multipart").iterdir()) == []
