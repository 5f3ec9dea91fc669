"""A store read failing under a delivery is the store's trouble, never the destination host's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bus.events.transfers import Fault
from consumers.movers.delivery import ReadAhead
from protocols.base import ConnectionLost, fault_of
from store.errors import ObjectNotFound, StoreError


async def _failing(error: Exception) -> AsyncIterator[bytes]:
    yield b"first chunk"
    raise error


async def test_a_remote_stores_connection_loss_is_transient_not_the_hosts() -> None:
    """A remote store's module losing its connection mid-read reaches the mover as a
    retriable StoreError (transient), not as a ConnectionLost that would count against the
    destination host and hold the destination."""
    read = ReadAhead(_failing(ConnectionLost("s3 store: connection reset")))
    with pytest.raises(StoreError) as raised:
        _ = [chunk async for chunk in read]
    assert (fault_of(raised.value), raised.value.retriable) == (Fault.TRANSIENT, True)
    assert isinstance(raised.value.__cause__, ConnectionLost)
    await read.aclose()


async def test_the_stores_own_errors_pass_as_they_are() -> None:
    """An object missing at the store stays ObjectNotFound: the file's own problem."""
    read = ReadAhead(_failing(ObjectNotFound("no object 0a1b")))
    with pytest.raises(ObjectNotFound) as raised:
        _ = [chunk async for chunk in read]
    assert fault_of(raised.value) is Fault.FILE
    await read.aclose()
