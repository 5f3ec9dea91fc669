"""Fixtures of the projection tests: a migrated read-model schema of their own per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from projections.migrate import migrate
from tests.projections.support import drop


@pytest.fixture
async def schema(postgres: str, unique: str) -> AsyncIterator[str]:
    """A freshly migrated schema ``rm_<unique>``, dropped (with its rebuild leftovers) after."""
    name = f"rm_{unique}"
    await migrate(postgres, name)
    yield name
    await drop(postgres, name, f"{name}_rebuild", f"{name}_old")
