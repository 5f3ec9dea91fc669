"""The contract suite against the in-process ``memory`` module, plus its sharing rule."""

from __future__ import annotations

import itertools

import pytest

from protocols.base import Location, from_bytes, read_all
from protocols.memory import forget
from protocols.registry import connect
from tests.protocols.contract import TransferContract

_counter = itertools.count()


class TestMemoryContract(TransferContract):
    """The memory module keeps the whole transfer contract."""

    @pytest.fixture
    async def location(self) -> Location:
        base = f"/t{next(_counter)}"
        location = Location(scheme="memory", host="contract", path=base)
        connection = await connect(location)
        await connection.mkdir(base)
        await connection.close()
        return location


async def test_tree_is_shared_per_host_name() -> None:
    """Two connections to the same host see one tree; another host sees its own."""
    forget("shared")
    one = await connect(Location.parse("memory://shared/"))
    two = await connect(Location.parse("memory://shared/"))
    other = await connect(Location.parse("memory://elsewhere/"))
    await one.put("f.bin", from_bytes(b"hello"))
    assert await read_all(two.get("/f.bin")) == b"hello"
    assert [e.name for e in await other.list("/")] == []
    for connection in (one, two, other):
        await connection.close()
