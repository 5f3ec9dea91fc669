"""Errors of the Object Data Store, each carrying ``retriable`` like every ecpds error.

Backends translate library and transfer-module errors into these at their boundary, chained
with ``from``: a missing object is permanent, a copy failing its checksum is retriable (a
replica, or the same read after a repair, may succeed), a corrupt compressed stream is
permanent.
"""

from __future__ import annotations

from bus.errors import EcpdsError


class StoreError(EcpdsError):
    """An Object Data Store failure."""


class ObjectNotFound(StoreError):
    """No object with this id in the backend (or its bytes are gone)."""

    retriable = False


class ObjectCorrupt(StoreError):
    """The stored bytes do not match the recorded size or ADLER32 checksum."""

    retriable = True


class CodecError(StoreError):
    """A compressed stream could not be decoded (corrupt, truncated or not of this codec)."""

    retriable = False


class NotStaged(StoreError):
    """A regional (continental) store replica has no copy of the object yet: it is being
    pre-staged, or its staging failed. Retriable: the next attempt may find it, and the
    scheduler sends the transfer to the central group after the regional group's
    ``fallback_after`` failures."""

    retriable = True
