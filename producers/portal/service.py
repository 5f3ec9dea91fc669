"""The portal's sessions, shared by every door (SFTP/SCP, HTTPS): the I/O shell around the pure
access model (``producers.portal.access``).

Rules kept here:

- Every operation is checked by ``access.authorise`` first; a refusal raises ``Refused`` and
  is published as ``PortalAccessDenied`` (user, protocol, operation, path, reason, address).
- The view: ``/`` lists the user's destinations; a destination lists what it has available
  for pickup (``projections.portal``: read models only), folders made from the ``/`` parts of
  targets, and the user's own uploads in progress (temporary names). One file asked for by
  name and not yet in the read models (just uploaded: they lag the log by a moment) is looked
  up in the ingest index the portal follows anyway, by the same rule of what is available. A
  destination with ``group_by_date`` shows one folder per day its transfers were queued (UTC,
  named with its ``date_format``), each holding that day's files; an upload into a date
  folder registers the name that follows it.
- Pull: bytes stream from the object store, whose reader verifies size and ADLER32 before it
  hands out the last chunk. A download is complete when every byte was served in order from
  offset 0 (so the verified end was reached): then a held transfer (``HOLD``) is marked
  ``DONE`` by ``TransferDownloaded``. Every download, complete or not, is a
  ``PortalDownloaded`` with the bytes sent; a partial one marks nothing.
- Push: a final name streams into the ingest service (the same one ``ecpds put``'s API uses:
  uniqueness, lifetime, aliases, standby), registered as it starts (the data file is
  ``REGISTERED``, no transfer yet, while it arrives). A temporary name is spooled on local
  disk under ``<var>/portal/spool`` and registered only once renamed to a final name. An
  upload cut midway fails its registration in the ingest service, which leaves no object;
  a spooled one is deleted. Each registered upload is a ``PortalUploaded``.
- Writes must come in order (offset = bytes received); resumed or sparse uploads are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from bus.config.secrets import OperatorKey, stored_hash
from bus.config.source import ConfigSource
from bus.errors import ConfigurationError, EcpdsError
from bus.events import Event, envelope
from bus.events.base import TransferStatus
from bus.events.config import DataUser
from bus.events.portal import PortalAccessDenied, PortalDownloaded, PortalUploaded
from bus.events.transfers import TransferDownloaded
from bus.logging import get_logger
from bus.templates.dates import DateFormat, DateFormatError, compile_format
from bus.topics import PORTAL, TRANSFERS
from producers.ingest.core import PORTAL_REQUESTER, Submission, unique_key, upload_cap
from producers.ingest.core import Refused as IngestRefused
from producers.ingest.index import FileState
from producers.ingest.service import Failure, IngestService, Receipt
from producers.portal.access import (
    Account,
    Denied,
    Direction,
    Operation,
    PortalPath,
    Reason,
    Usage,
    account_of,
    authorise,
    confine,
    is_temporary,
)
from projections.portal import Available, Page
from store.errors import ObjectCorrupt
from store.objects import ObjectId
from store.ports import ObjectStore

log = get_logger(__name__)

CHUNK = 256 * 1024  # bytes read from a spooled upload at a time
UPLOAD_QUEUE = 16  # chunks in flight between a door and the ingest service


class PortalError(Exception):
    """Why an operation did not happen; each door answers it with its own code."""


class Refused(PortalError):
    """The access model refused it (published as ``PortalAccessDenied``)."""

    def __init__(self, denied: Denied) -> None:
        super().__init__(denied.message)
        self.denied = denied


class NotFound(PortalError):
    """No such file or folder in the user's view."""


class Unsupported(PortalError):
    """The view cannot do that (e.g. rename a registered file)."""


class Failed(PortalError):
    """The operation was tried and failed (a store error, a refused registration ...)."""


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


@dataclass(frozen=True, slots=True)
class PortalTopics:
    """Where the portal's events go (tests use their own topic names)."""

    portal: str = PORTAL
    transfers: str = TRANSFERS


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in a folder of the view."""

    name: str
    folder: bool
    size: int | None = None
    mtime: datetime | None = None
    available: Available | None = None
    staged: bool = False


@dataclass(frozen=True, slots=True)
class _Place:
    """A path of the view as a place in its destination: ``target`` (a file or folder name),
    and for a destination grouped by date the ``day`` of its date folder, or every date folder
    (``folders``, at the destination itself); ``known`` is False for a date folder not there."""

    target: str
    day: date | None = None
    folders: tuple[str, ...] | None = None
    known: bool = True
    dated: bool = False


def _day_format(pattern: str) -> DateFormat:
    try:
        return compile_format(pattern)
    except DateFormatError:  # refused when configured; a safe name rather than a crash
        return compile_format("yyyyMMdd")


@dataclass(slots=True)
class _Staged:
    path: Path
    size: int = 0
    mtime: datetime = field(default_factory=lambda: datetime.now(UTC))


def _now() -> datetime:
    return datetime.now(UTC)


class Portal:
    """What every door shares: configuration, read models, stores, ingest, usage, events."""

    def __init__(
        self,
        *,
        config: ConfigSource,
        reads: Reads,
        stores: Stores,
        ingest: IngestService,
        publish: Publish,
        spool: Path,
        topics: PortalTopics | None = None,
        source: str = "portal",
        key_file: Path | None = None,
        max_upload: int | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.config = config
        self.max_upload = max_upload  # ECPDS_MAX_UPLOAD, as the ingest API caps a put
        self._key_file = key_file  # decrypts data users' hashes (``bus.config.secrets``)
        self.reads = reads
        self.stores = stores
        self.ingest = ingest
        self.topics = topics or PortalTopics()
        self.usage = Usage()
        self.source = source
        self.clock = clock
        self._publish = publish
        self._spool = spool
        self._staged: dict[tuple[str, str, str], _Staged] = {}
        self._folders: dict[tuple[str, str], set[str]] = {}
        self.sessions: set[Session] = set()
        self.uploads: set[Upload] = set()  # streaming into the ingest service right now
        self._pending: set[asyncio.Future[None]] = set()

    # -- accounts ---------------------------------------------------------------------------

    def user(self, login: str) -> DataUser | None:
        return self.config.view.users.get(login)

    def password_hash(self, login: str) -> str | None:
        """``login``'s argon2 hash, decrypted; None for no such user, or one whose hash is
        under a key this machine lacks (nobody signs in as them)."""
        user = self.user(login)
        if user is None:
            return None
        try:
            key = OperatorKey.load(self._key_file, create=False) if self._key_file else None
            return stored_hash(user, key)
        except ConfigurationError:
            return None

    def account(self, login: str) -> Account | Denied:
        """``login``'s account now, or why it has none."""
        user = self.user(login)
        if user is None:
            return Denied(Reason.NOT_FOUND, f"no data user {login}")
        try:
            return account_of(user, self.config.view)
        except ConfigurationError as error:
            log.error("data user misconfigured", login=login, error=str(error))
            return Denied(Reason.DISABLED, f"account {login} is misconfigured")

    def start_session(self, login: str, protocol: str, address: str | None) -> Session | Denied:
        """A session of a signed-in user, or why not (disabled, expired, no destinations,
        max connections, quota spent); a refusal is published in the background."""
        found = self.account(login)
        refused = found if isinstance(found, Denied) else self.usage.open(found, self.clock())
        if refused is not None:
            self._later(self.denied(login, protocol, address, refused))
            return refused
        session = Session(self, login, protocol, address)
        self.sessions.add(session)
        log.info("portal session opened", user=login, protocol=protocol, client_address=address)
        return session

    def _later(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.ensure_future(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def cut_uploads(self) -> None:
        """Abort every upload still streaming (shutdown, once the doors are closed): each
        registration is closed failed and keeps no object, before the publisher stops."""
        for upload in list(self.uploads):
            await upload.abort("the portal stopped during the upload")

    async def drain(self) -> None:
        """Wait for the events still being published in the background (shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- events -----------------------------------------------------------------------------

    async def publish(self, topic: str, key: str, event: Event) -> None:
        try:
            await self._publish(topic, key, event)
        except EcpdsError as error:
            log.error("portal event not published", event_type=event.AVRO_NAME, error=str(error))

    async def denied(
        self, login: str | None, protocol: str, address: str | None, denied: Denied
    ) -> None:
        log.info(
            "portal access denied",
            user=login,
            protocol=protocol,
            reason=denied.reason.value,
            operation=denied.operation.value if denied.operation else None,
            path=denied.path,
            client_address=address,
        )
        key = login or address or "-"
        event = PortalAccessDenied(
            envelope=envelope(self.source, key),
            user=login,
            protocol=protocol,
            reason=denied.reason,
            message=denied.message,
            operation=denied.operation.value.lower() if denied.operation else None,
            path=denied.path,
            client_address=address,
        )
        await self.publish(self.topics.portal, key, event)

    # -- temporary uploads and folders, per user ---------------------------------------------

    def staged(self, login: str, destination: str) -> dict[str, _Staged]:
        return {
            name: staged
            for (who, dest, name), staged in self._staged.items()
            if who == login and dest == destination
        }

    def stage(self, login: str, destination: str, name: str) -> _Staged:
        self._spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = _Staged(self._spool / uuid.uuid4().hex)
        old = self._staged.pop((login, destination, name), None)
        if old is not None:
            old.path.unlink(missing_ok=True)
        self._staged[(login, destination, name)] = staged
        return staged

    def restage(self, login: str, destination: str, old: str, new: str) -> None:
        """An upload in progress renamed to another temporary name (replacing one there)."""
        self.unstage(login, destination, new)
        self._staged[(login, destination, new)] = self._staged.pop((login, destination, old))

    def clear_spool(self) -> int:
        """Delete what a previous run left spooled (its uploads in progress died with it);
        how many files."""
        if not self._spool.is_dir():
            return 0
        leftovers = [p for p in self._spool.iterdir() if p.is_file()]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def unstage(self, login: str, destination: str, name: str) -> _Staged | None:
        staged = self._staged.pop((login, destination, name), None)
        if staged is not None:
            staged.path.unlink(missing_ok=True)
        return staged

    def folders(self, login: str, destination: str) -> set[str]:
        return self._folders.setdefault((login, destination), set())


class Session:
    """One signed-in connection of a data user through one protocol."""

    def __init__(self, portal: Portal, login: str, protocol: str, address: str | None) -> None:
        self.portal = portal
        self.login = login
        self.protocol = protocol
        self.address = address
        self.opened_at = portal.clock()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.portal.usage.close(self.login)
            self.portal.sessions.discard(self)
            log.info("portal session closed", user=self.login, protocol=self.protocol)

    # -- checks -----------------------------------------------------------------------------

    async def resolve(self, raw: str) -> PortalPath:
        """``raw`` confined to the view; a path that tries to leave it is ``Refused`` (and
        published)."""
        found = confine(raw)
        if isinstance(found, Denied):
            await self.refuse(found)
            raise Refused(found)
        return found

    async def check(self, operation: Operation, path: PortalPath) -> Account:
        """The account, if it may do ``operation`` on ``path`` now; else ``Refused``."""
        found = self.portal.account(self.login)
        if isinstance(found, Denied):
            refused: Denied | None = Denied(found.reason, found.message, operation, str(path))
        else:
            refused = authorise(found, operation, path, self.portal.clock())
        if refused is not None:
            await self.portal.denied(self.login, self.protocol, self.address, refused)
            raise Refused(refused)
        assert isinstance(found, Account)
        return found

    async def refuse(self, denied: Denied) -> None:
        """Publish a refusal found by a door (e.g. a path that tries to leave the view)."""
        await self.portal.denied(self.login, self.protocol, self.address, denied)

    def may(self, operation: Operation, path: PortalPath) -> bool:
        """Whether ``operation`` is allowed (no event: for what a listing shows)."""
        found = self.portal.account(self.login)
        if isinstance(found, Denied):
            return False
        return authorise(found, operation, path, self.portal.clock()) is None

    # -- reading the view -------------------------------------------------------------------

    async def list(self, path: PortalPath) -> list[Entry]:
        """The names in folder ``path`` (``dir``)."""
        account = await self.check(Operation.DIR, path)
        if path.destination is None:
            return [Entry(d, True) for d in account.destinations]
        destination, prefix = path.destination, path.name
        lead = prefix + "/" if prefix else ""
        place = await self._place(path)
        entries: dict[str, Entry] = {}
        if place.folders is not None:
            entries = {name: Entry(name, True) for name in place.folders}
        elif place.known:
            inner = place.target + "/" if place.target else ""
            now = self.portal.clock()
            found = await self.portal.reads.available(
                destination, now, under=place.target, day=place.day
            )
            for item in found:
                head, sep, _ = item.target[len(inner) :].partition("/")
                if sep:
                    entries.setdefault(head, Entry(head, True))
                else:
                    entries[head] = Entry(head, False, item.size, item.stored_at, item)
        for name, staged in self.portal.staged(self.login, destination).items():
            if name.startswith(lead):
                head, sep, _ = name[len(lead) :].partition("/")
                entries.setdefault(head, Entry(head, True) if sep else _staged_entry(head, staged))
        for folder in self.portal.folders(self.login, destination):
            if folder.startswith(lead):
                head = folder[len(lead) :].split("/", 1)[0]
                if head:
                    entries.setdefault(head, Entry(head, True))
        if not entries and prefix and not await self._folder(path, place):
            raise NotFound(f"{path}: no such folder")
        return [entries[name] for name in sorted(entries)]

    async def _place(self, path: PortalPath) -> _Place:
        """Where ``path`` is in its destination: for one that groups by date
        (``group_by_date``), its first part is a date folder (the day its transfers were
        queued, UTC, written with ``date_format``) taken off the target."""
        view = self.portal.config.view
        dest = view.destinations.get(path.destination) if path.destination else None
        if dest is None or not dest.group_by_date:
            return _Place(path.name)
        days = await self.portal.reads.days(dest.name, self.portal.clock())
        written = _day_format(dest.date_format)
        named = {written.format(datetime(d.year, d.month, d.day, tzinfo=UTC)): d for d in days}
        if len(path.parts) == 1:
            return _Place("", folders=tuple(sorted(named)))
        day = named.get(path.parts[1])
        return _Place("/".join(path.parts[2:]), day, known=day is not None, dated=True)

    async def page(
        self, path: PortalPath, *, order: str, descending: bool, limit: int, offset: int
    ) -> tuple[int, tuple[Entry, ...]]:
        """One page of folder ``path`` (``dir``): (entries in all, the page), folders first.
        Paged by the read models' query unless the user has uploads in progress or folders of
        its own there (then the whole folder is listed and paged here)."""
        await self.check(Operation.DIR, path)
        destination, prefix = path.destination, path.name
        lead = prefix + "/" if prefix else ""
        own = (
            destination is None
            or any(n.startswith(lead) for n in self.portal.staged(self.login, destination))
            or any(f.startswith(lead) for f in self.portal.folders(self.login, destination))
        )
        place = await self._place(path) if destination is not None else _Place("")
        if own or place.dated or place.folders is not None:
            entries = await self.list(path)
            entries.sort(key=_order(order), reverse=descending)
            entries.sort(key=lambda e: not e.folder)  # stable: folders first, order kept
            return len(entries), tuple(entries[offset : offset + limit])
        assert destination is not None
        found = await self.portal.reads.page(
            destination,
            self.portal.clock(),
            under=prefix,
            order=order,
            descending=descending,
            limit=limit,
            offset=offset,
        )
        if found.total == 0 and prefix and not await self._folder(path, place):
            raise NotFound(f"{path}: no such folder")
        page = [Entry(name, True) for name in found.folders]
        page += [
            Entry(item.target[len(lead) :], False, item.size, item.stored_at, item)
            for item in found.files
        ]
        return found.total, tuple(page)

    async def _folder(self, path: PortalPath, place: _Place) -> bool:
        """Whether ``path`` (inside a destination) is a folder of the user's view."""
        assert path.destination is not None
        destination, prefix = path.destination, path.name
        if prefix in self.portal.folders(self.login, destination):
            return True
        lead = prefix + "/"
        if any(n.startswith(lead) for n in self.portal.staged(self.login, destination)):
            return True
        if not place.known:
            return False
        if place.dated and not place.target:
            return True  # a date folder that holds something
        now = self.portal.clock()
        found = await self.portal.reads.available(
            destination, now, under=place.target, day=place.day, limit=1
        )
        return bool(found)

    async def stat(self, path: PortalPath) -> Entry:
        """What ``path`` is; ``size``/``mtime`` only with the ``size``/``mtime`` grant."""
        found = self.portal.account(self.login)
        if isinstance(found, Denied) or (
            path.destination is not None and not found.may_see(path.destination)
        ):
            denied = Denied(Reason.NOT_FOUND, f"{path}: no such file", Operation.SIZE, str(path))
            await self.refuse(denied)
            raise NotFound(denied.message)
        if path.destination is None or not path.name:
            return Entry(path.parts[-1] if path.parts else "/", True)
        destination, name = path.destination, path.name
        leaf = path.parts[-1]
        staged = self.portal.staged(self.login, destination).get(name)
        if staged is not None:
            return self._shown(path, _staged_entry(leaf, staged))
        place = await self._place(path)
        item = await self._find(destination, place)
        if item is not None:
            return self._shown(path, Entry(leaf, False, item.size, item.stored_at, item))
        if await self._folder(path, place):
            return Entry(leaf, True)
        raise NotFound(f"{path}: no such file")

    async def _find(self, destination: str, place: _Place) -> Available | None:
        """The file available at ``place`` now: from the read models, or, while they have not
        caught up yet (a file just uploaded), from the ingest index this portal follows."""
        if not place.known or not place.target:
            return None
        now = self.portal.clock()
        found = await self.portal.reads.find(destination, place.target, now, day=place.day)
        if found is not None or place.dated:
            return found
        return _fresh(self.portal.ingest, destination, place.target, now)

    def _shown(self, path: PortalPath, entry: Entry) -> Entry:
        size = entry.size if self.may(Operation.SIZE, path) else None
        mtime = entry.mtime if self.may(Operation.MTIME, path) else None
        return Entry(entry.name, entry.folder, size, mtime, entry.available, entry.staged)

    # -- pull -------------------------------------------------------------------------------

    async def open_read(self, path: PortalPath) -> Download:
        """A download of ``path`` (``get``)."""
        await self.check(Operation.GET, path)
        if path.destination is None or not path.name:
            raise Unsupported(f"{path} is a folder")
        item = await self._find(path.destination, await self._place(path))
        if item is None:
            raise NotFound(f"{path}: no such file")
        try:
            store = self.portal.stores.store_for(item.store)
        except ConfigurationError as error:
            raise Failed(f"{path}: its store cannot be opened ({error})") from error
        return Download(self, path, item, store)

    # -- push -------------------------------------------------------------------------------

    async def open_write(self, path: PortalPath) -> Upload | SpoolWriter:
        """An upload to ``path`` (``put``): spooled when its name is temporary."""
        account = await self.check(Operation.PUT, path)
        if path.destination is None or not path.name:
            raise Unsupported(f"{path} is a folder")
        if is_temporary(account, path.name):
            staged = self.portal.stage(self.login, path.destination, path.name)
            return SpoolWriter(self, path, staged, self._cap(path))
        return Upload(self, path, None, self._cap(path), self._target(path))

    def _target(self, path: PortalPath) -> str:
        """The target an upload to ``path`` registers: in a destination that groups by date,
        what follows the date folder (a name put at its top is its own target)."""
        dest = self.portal.config.view.destinations.get(path.destination or "")
        if dest is not None and dest.group_by_date and len(path.parts) > 2:
            return "/".join(path.parts[2:])
        return path.name

    def _cap(self, path: PortalPath) -> tuple[int, str] | None:
        assert path.destination is not None
        view, default = self.portal.config.view, self.portal.max_upload
        return upload_cap(view, path.destination, self.login, default)

    async def rename(self, old: PortalPath, new: PortalPath) -> None:
        """``rename``: an upload in progress to another name; to a final name registers it."""
        await self.check(Operation.RENAME, old)
        account = await self.check(Operation.RENAME, new)
        if old.destination is None or new.destination != old.destination or not new.name:
            raise Unsupported("only files can be renamed, within their destination")
        staged = self.portal.staged(self.login, old.destination).get(old.name)
        if staged is None:
            raise Unsupported(f"{old}: only uploads in progress (temporary names) can be renamed")
        if is_temporary(account, new.name):
            self.portal.restage(self.login, old.destination, old.name, new.name)
            return
        await self.check(Operation.PUT, new)
        upload = Upload(self, new, staged.size, self._cap(new), self._target(new))
        try:
            async for chunk in _read_file(staged.path):
                await upload.write(upload.received, chunk)
            await upload.finish()
        except BaseException:
            await upload.abort()
            raise
        self.portal.unstage(self.login, old.destination, old.name)

    async def remove(self, path: PortalPath) -> None:
        """``delete``: an upload in progress is dropped; a registered file cannot be."""
        await self.check(Operation.DELETE, path)
        if path.destination is not None and self.portal.unstage(
            self.login, path.destination, path.name
        ):
            return
        if path.destination is not None and path.name:
            item = await self.portal.reads.find(path.destination, path.name, self.portal.clock())
            if item is None:
                raise NotFound(f"{path}: no such file")
        raise Unsupported(f"{path}: registered files are not deleted through the portal")

    async def mkdir(self, path: PortalPath) -> None:
        """``mkdir``: a folder of the user's view in a destination (kept while the portal runs)."""
        await self.check(Operation.MKDIR, path)
        if path.destination is None or not path.name:
            raise Unsupported(f"{path}: folders are made inside a destination")
        self.portal.folders(self.login, path.destination).add(path.name)

    async def rmdir(self, path: PortalPath) -> None:
        """``rmdir``: an empty folder made by ``mkdir``."""
        await self.check(Operation.RMDIR, path)
        if path.destination is None or not path.name:
            raise Unsupported(f"{path}: destinations are not removed through the portal")
        folders = self.portal.folders(self.login, path.destination)
        if path.name not in folders:
            raise NotFound(f"{path}: no such folder")
        lead = path.name + "/"
        staged = self.portal.staged(self.login, path.destination)
        now = self.portal.clock()
        if (
            any(f.startswith(lead) for f in folders)
            or any(n.startswith(lead) for n in staged)
            or await self.portal.reads.available(path.destination, now, under=path.name, limit=1)
        ):
            raise Failed(f"{path}: folder not empty")
        folders.discard(path.name)

    async def touch(self, path: PortalPath) -> None:
        """``mtime`` set by a client (``put -p``): allowed with the grant, otherwise ignored."""
        await self.check(Operation.MTIME, path)


_NOT_YET = frozenset({TransferStatus.INIT, TransferStatus.SCHE, TransferStatus.FETC})


def _fresh(ingest: IngestService, destination: str, name: str, now: datetime) -> Available | None:
    """``name`` of ``destination`` as the ingest index knows it, if stored and available now
    (the rule of ``projections.portal``, applied to the index's own entries)."""
    entry = ingest.index.latest_file(unique_key(destination, name, None))
    if entry is None or entry.state is not FileState.STORED or entry.stored is None:
        return None
    stored = entry.stored
    for transfer in ingest.index.transfers_of(stored.data_file_id):
        if transfer.destination != destination or transfer.status in _NOT_YET:
            continue
        if transfer.queue_time > now or transfer.expiry_time <= now:
            continue
        return Available(
            transfer_id=transfer.transfer_id,
            target=name,
            status=transfer.status.value,
            data_file_id=stored.data_file_id,
            size=stored.size,
            guid=stored.guid,
            store=stored.store,
            adler32=stored.checksums.adler32,
            md5=stored.checksums.md5,
            stored_at=stored.envelope.occurred_at,
            queue_time=transfer.queue_time,
            priority=transfer.priority,
        )
    return None


def _over(cap: tuple[int, str] | None, size: int) -> str | None:
    """Why ``size`` bytes pass ``cap``, or None."""
    if cap is None or size <= cap[0]:
        return None
    return f"more than {cap[0]} bytes: {cap[1]}"


def _order(key: str) -> Callable[[Entry], Any]:
    """How entries sort by ``name``, ``size`` or ``mtime`` (name within equals)."""
    if key == "size":
        return lambda e: (e.size or 0, e.name)
    if key == "mtime":
        return lambda e: (e.mtime.timestamp() if e.mtime else 0.0, e.name)
    return lambda e: e.name


def _staged_entry(name: str, staged: _Staged) -> Entry:
    return Entry(name, False, staged.size, staged.mtime, staged=True)


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()


class Download:
    """One file being read by a client, at any offsets (see the module rules)."""

    def __init__(self, session: Session, path: PortalPath, item: Available, store: ObjectStore):
        self.session = session
        self.path = path
        self.item = item
        self._store = store
        self._stream: AsyncIterator[bytes] | None = None
        self._buffer = bytearray()
        self._next = 0  # offset of the buffer's first byte in the file
        self._whole = True  # every read so far continued the previous one, from offset 0
        self.sent = 0
        self._started = time.monotonic()
        self._closed = False

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (b"" at or past the end)."""
        if offset >= self.item.size:
            return b""
        if offset != self._next:
            self._whole = False  # a seek: this read cannot vouch for the whole file
        if self._stream is None or offset != self._next:
            await self._reopen(offset)
        assert self._stream is not None
        try:
            while len(self._buffer) < size:
                chunk = await anext(self._stream, None)
                if chunk is None:
                    break
                self._buffer += chunk
        except ObjectCorrupt as error:
            self._whole = False
            log.error("portal download corrupt", path=str(self.path), error=str(error))
            raise Failed(f"{self.path}: stored bytes do not match their checksum") from error
        except EcpdsError as error:
            self._whole = False
            raise Failed(f"{self.path}: the store failed ({error})") from error
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._next = offset + len(data)
        self.sent += len(data)
        return data

    async def _reopen(self, offset: int) -> None:
        await self._drop()
        self._buffer.clear()
        self._next = offset
        self._stream = self._store.get(ObjectId(self.item.guid), offset=offset)

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    @property
    def complete(self) -> bool:
        """Every byte served in order from offset 0: the verified end was reached."""
        return self._whole and self._next == self.item.size and self.sent == self.item.size

    async def close(self) -> None:
        """End the download: count it, and publish it (and ``DONE`` when it was complete)."""
        if self._closed:
            return
        self._closed = True
        await self._drop()
        session, item, portal = self.session, self.item, self.session.portal
        complete = self.complete
        duration = int((time.monotonic() - self._started) * 1000)
        portal.usage.moved(session.login, Direction.DOWNLOAD, self.sent, portal.clock())
        log.info(
            "portal download",
            user=session.login,
            path=str(self.path),
            bytes=self.sent,
            complete=complete,
            duration_ms=duration,
            protocol=session.protocol,
        )
        destination = self.path.destination or ""
        downloaded = PortalDownloaded(
            envelope=envelope(portal.source, item.transfer_id),
            user=session.login,
            destination=destination,
            path=self.path.name,
            protocol=session.protocol,
            bytes_sent=self.sent,
            duration_ms=duration,
            complete=complete,
            data_file_id=item.data_file_id,
            transfer_id=item.transfer_id,
            client_address=session.address,
        )
        await portal.publish(portal.topics.portal, session.login, downloaded)
        if complete and item.status == "HOLD":
            done = TransferDownloaded(
                envelope=envelope(portal.source, item.transfer_id, downloaded.envelope.event_id),
                transfer_id=item.transfer_id,
                destination=destination,
                user=session.login,
                protocol=session.protocol,
                bytes_sent=self.sent,
            )
            await portal.publish(portal.topics.transfers, destination, done)


class Upload:
    """One file streaming into the ingest service as the client writes it."""

    def __init__(
        self,
        session: Session,
        path: PortalPath,
        size: int | None,
        cap: tuple[int, str] | None = None,
        target: str | None = None,
    ) -> None:
        self.session = session
        self.path = path
        self.received = 0
        self._cap = cap
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(UPLOAD_QUEUE)
        self._started = time.monotonic()
        assert path.destination is not None
        submission = Submission(
            destination=path.destination,
            target=target if target is not None else path.name,
            user=session.login,
            requested_by=f"{PORTAL_REQUESTER}{session.login}",
            original=path.parts[-1],
            size=size,
        )
        self._task = asyncio.ensure_future(session.portal.ingest.submit(submission, self._body()))
        self._ended = False
        session.portal.uploads.add(self)

    async def _body(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _put(self, item: bytes | BaseException | None) -> None:
        """Hand ``item`` to the ingest service unless it has already answered."""
        putting = asyncio.ensure_future(self._queue.put(item))
        await asyncio.wait({putting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not putting.done():
            putting.cancel()

    async def write(self, offset: int, data: bytes) -> None:
        if offset != self.received:
            await self.abort()
            raise Unsupported(f"{self.path}: writes must be sequential (resume is not supported)")
        if self._task.done():
            await self._answer()  # refused or failed early: say why
        if (over := _over(self._cap, self.received + len(data))) is not None:
            await self.abort(over)
            raise Failed(f"{self.path}: {over}")
        await self._put(data)
        self.received += len(data)

    async def finish(self) -> Receipt:
        """The client closed the file: the registration's outcome."""
        self._ended = True
        self.session.portal.uploads.discard(self)
        await self._put(None)
        receipt = await self._answer()
        session, portal = self.session, self.session.portal
        duration = int((time.monotonic() - self._started) * 1000)
        portal.usage.moved(session.login, Direction.UPLOAD, receipt.size, portal.clock())
        uploaded = PortalUploaded(
            envelope=envelope(portal.source, receipt.data_file_id),
            user=session.login,
            destination=self.path.destination or "",
            path=self.path.name,
            protocol=session.protocol,
            size=receipt.size,
            duration_ms=duration,
            data_file_id=receipt.data_file_id,
            client_address=session.address,
        )
        await portal.publish(portal.topics.portal, session.login, uploaded)
        log.info(
            "portal upload",
            user=session.login,
            path=str(self.path),
            bytes=receipt.size,
            data_file_id=receipt.data_file_id,
            protocol=session.protocol,
        )
        return receipt

    async def _answer(self) -> Receipt:
        outcome = await self._task
        if isinstance(outcome, Receipt):
            return outcome
        if isinstance(outcome, IngestRefused):
            raise Failed(f"{self.path}: {outcome.message}")
        assert isinstance(outcome, Failure)
        raise Failed(f"{self.path}: {outcome.message}")

    async def abort(self, why: str | None = None) -> None:
        """The client went away midway (or the upload passed its cap): the ingest service
        fails the registration and keeps no object."""
        if self._ended:
            return
        self._ended = True
        self.session.portal.uploads.discard(self)
        why = why or f"upload of {self.path} cut after {self.received} bytes"
        await self._put(ConnectionAbortedError(why))
        with contextlib.suppress(Exception):
            await self._task
        log.info("portal upload cut", user=self.session.login, path=str(self.path))


class SpoolWriter:
    """An upload under a temporary name: spooled locally until renamed to a final name."""

    def __init__(
        self,
        session: Session,
        path: PortalPath,
        staged: _Staged,
        cap: tuple[int, str] | None = None,
    ) -> None:
        self.session = session
        self.path = path
        self.staged = staged
        self.received = 0
        self._cap = cap
        self._handle = staged.path.open("wb")
        os.chmod(staged.path, 0o600)

    async def write(self, offset: int, data: bytes) -> None:
        if offset != self.received:
            await self.abort()
            raise Unsupported(f"{self.path}: writes must be sequential (resume is not supported)")
        if (over := _over(self._cap, self.received + len(data))) is not None:
            await self.abort(over)
            raise Failed(f"{self.path}: {over}")
        await asyncio.to_thread(self._handle.write, data)
        self.received += len(data)
        self.staged.size = self.received
        self.staged.mtime = datetime.now(UTC)

    async def finish(self) -> None:
        await asyncio.to_thread(self._handle.close)

    async def abort(self, why: str | None = None) -> None:
        self._handle.close()
        assert self.path.destination is not None
        self.session.portal.unstage(self.session.login, self.path.destination, self.path.name)


__all__ = [
    "Download",
    "Entry",
    "Failed",
    "NotFound",
    "Portal",
    "PortalError",
    "PortalTopics",
    "Refused",
    "Session",
    "SpoolWriter",
    "Unsupported",
    "Upload",
]
