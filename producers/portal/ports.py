"""The portal's ports: what it reads (the read models), where bytes are (object stores by
name) and how it publishes. The adapters are ``projections.portal.PortalReads``,
``store.named.NamedStores`` and ``bus.publisher.Publisher``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Protocol

from bus.events import Event
from projections.portal import Available, Page
from store.ports import ObjectStore


class Reads(Protocol):
    """The read models the portal lists from (``projections.portal.PortalReads``)."""

    async def available(
        self,
        destination: str,
        now: datetime,
        *,
        under: str = "",
        limit: int = 200_000,
        day: date | None = None,
    ) -> list[Available]: ...

    async def find(
        self, destination: str, target: str, now: datetime, *, day: date | None = None
    ) -> Available | None: ...

    async def days(self, destination: str, now: datetime) -> list[date]: ...

    async def page(
        self,
        destination: str,
        now: datetime,
        *,
        under: str = "",
        order: str = "name",
        descending: bool = False,
        limit: int = 1000,
        offset: int = 0,
        day: date | None = None,
    ) -> Page: ...


class Stores(Protocol):
    """Object stores by the name a data file records (``store.named.NamedStores``)."""

    def store_for(self, name: str) -> ObjectStore: ...


Publish = Callable[[str, str, Event], Awaitable[object]]
"""Publishes one event on a topic under a key, waiting for the broker."""


__all__ = ["Publish", "Reads", "Stores"]
