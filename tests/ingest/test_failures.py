"""Which failed registrations a client is told to try again (503) rather than given up (500)."""

from __future__ import annotations

import errno

from producers.ingest.service import failure_is_retriable
from store.errors import ObjectNotFound, StoreError


def test_a_full_store_is_worth_trying_again() -> None:
    """ENOSPC or EDQUOT, raised as is or as the cause of a store error, is retriable."""
    full = OSError(errno.ENOSPC, "No space left on device")
    assert failure_is_retriable(full, "store")
    wrapped = StoreError("put failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert failure_is_retriable(wrapped, "store")


def test_other_failures_keep_their_own_flag_or_the_stage_rule() -> None:
    """A missing object stays permanent; an unflagged error is retriable only while receiving
    the body or registering."""
    assert not failure_is_retriable(ObjectNotFound("gone"), "store")
    assert not failure_is_retriable(OSError(errno.EACCES, "Permission denied"), "store")
    assert failure_is_retriable(OSError(errno.EACCES, "Permission denied"), "receive")
    assert failure_is_retriable(ValueError("x"), "register")
