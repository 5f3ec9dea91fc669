"""Password checks off the event loop, in a small bounded pool, at one cost for every login.

Rules kept here:

- argon2 costs tens of milliseconds of CPU per check; run on an event loop it stalls every
  page, stream and API call of the process. Checks run in a ``ThreadPoolExecutor`` of
  ``workers`` threads (argon2-cffi releases the GIL while hashing), and at most ``workers``
  checks are handed to it at once (the rest wait on a semaphore, costing the loop nothing).
- On Linux the pool's threads run at a lower CPU priority (nice +10, inherited by the threads
  argon2 itself starts for its lanes): on a busy machine a burst of sign-ins waits, while pages,
  streams and API calls are served first.
- An unknown login (or one without a password) is checked against a dummy hash made with the
  same parameters, and then refused: a known login and an unknown one take the same time, so
  timing does not tell which logins exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from bus.config.secrets import hash_password, verify_password

NICENESS = 10


def _lower_priority() -> None:
    """Run the calling pool thread (and the threads it starts) after the event loop's."""
    if sys.platform == "linux":  # elsewhere a thread id is not a PRIO_PROCESS target
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


class PasswordChecker:
    """Verifies passwords against argon2 hashes in ``workers`` threads."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="passwords", initializer=_lower_priority
        )
        self._slots = asyncio.Semaphore(workers)
        # a hash of a random password nobody knows: what an unknown login is checked against
        self._dummy = hash_password(secrets.token_urlsafe(24))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``; None (no such login) costs the same
        as a real check and is always False."""
        digest = password_hash if password_hash else self._dummy
        async with self._slots:
            loop = asyncio.get_running_loop()
            matched = await loop.run_in_executor(self._pool, verify_password, digest, password)
        return matched and password_hash is not None and password_hash != ""

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["PasswordChecker"]
