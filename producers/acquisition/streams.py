"""The bytes of one retrieval: a remote file streamed with its bounds and checks.

Rule kept: every check fails *inside* the stream (a read past the deadline, fewer or more
bytes than listed), so the ingest service that consumes it fails the registration and
nothing is stored or queued; the error is also kept in a ``Tally`` for the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from protocols.base import Connection, TransferError, TransferTimeout

CLOSE_TIMEOUT = 5.0


class SizeMismatch(TransferError):
    """The provider sent another number of bytes than it listed (it may be rewriting it)."""

    retriable = True


@dataclass(slots=True)
class Tally:
    """What a retrieval stream received, and the error that broke it (for the event)."""

    size: int = 0
    error: BaseException | None = None


async def close_quietly(conn: Connection) -> None:
    # a hung provider may hang the goodbye too: never wait on it for long
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await conn.close()


async def remote_body(
    conn: Connection, path: str, expected: int | None, deadline: float, tally: Tally
) -> AsyncIterator[bytes]:
    """The remote file, bounded by ``deadline``; a short or long read raises ``SizeMismatch``.

    Errors are raised from inside the stream so the ingest service fails the registration
    (nothing stored, nothing queued) and records them in ``tally`` for the event."""
    stream = conn.get(path)
    try:
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TransferTimeout(f"retrieval of {path} passed its maximum duration")
                async with asyncio.timeout(remaining):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except TimeoutError as error:
                tally.error = TransferTimeout(f"retrieval of {path} passed its maximum duration")
                raise tally.error from error
            except Exception as error:
                tally.error = error
                raise
            tally.size += len(chunk)
            yield chunk
        if expected is not None and tally.size != expected:
            tally.error = SizeMismatch(f"{path}: listed {expected} bytes, received {tally.size}")
            raise tally.error
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await stream.aclose()  # type: ignore[attr-defined]
