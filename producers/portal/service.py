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

The pieces: ``access`` (the pure rules), ``ports`` (what it reads and publishes through),
``places`` (date folders, files just uploaded), ``streams`` (the bytes of one download or
upload), ``errors`` (what the doors answer); the doors are ``sftp``, ``https`` and ``webdav``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bus.config.secrets import OperatorKey, stored_hash
from bus.config.source import ConfigSource
from bus.config.view import ConfigView
from bus.errors import ConfigurationError, EcpdsError
from bus.events import Event, envelope
from bus.events.config import DataUser
from bus.events.portal import PortalAccessDenied, PortalSession, PortalSessionsReported
from bus.logging import get_logger
from bus.topics import PORTAL, TRANSFERS
from producers.ingest.core import upload_cap
from producers.ingest.service import IngestService
from producers.portal.access import (
    Account,
    Denied,
    Operation,
    PortalPath,
    Reason,
    Usage,
    account_of,
    authorise,
    confine,
    is_temporary,
)
from producers.portal.errors import (
    Failed,
    NotFound,
    PortalError,
    Refused,
    TooLarge,
    Unsupported,
)
from producers.portal.places import Place, day_format, fresh
from producers.portal.ports import Publish, Reads, Stores
from producers.portal.streams import Download, SpoolWriter, Staged, Upload, read_file
from projections.portal import Available

log = get_logger(__name__)
# how often an instance reports its sessions in progress; the monitor drops a report older than
# two periods (its instance stopped or died), so a dead portal's sessions vanish within 10 s
REPORT_PERIOD = 5.0


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


# doors whose session is one request: its opening and closing are logged at debug, as the
# download or upload line (info) says what the request did
ONE_REQUEST = frozenset({"https", "s3"})


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
        report_period: float = REPORT_PERIOD,
    ) -> None:
        self.config = config
        self.report_period = report_period  # of the sessions in progress (``report_sessions``)
        self.reported = False  # the last report named sessions
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
        self._staged: dict[tuple[str, str, str], Staged] = {}
        self._folders: dict[tuple[str, str], set[str]] = {}
        self.sessions: set[Session] = set()
        self.uploads: set[Upload] = set()  # streaming into the ingest service right now
        self._pending: set[asyncio.Future[None]] = set()
        self._hashes: dict[str, tuple[DataUser, str | None]] = {}  # see ``password_hash``
        self._accounts: tuple[ConfigView | None, dict[str, Account | Denied]] = (None, {})

    # -- accounts ---------------------------------------------------------------------------

    def user(self, login: str) -> DataUser | None:
        return self.config.view.users.get(login)

    def password_hash(self, login: str) -> str | None:
        """``login``'s argon2 hash, decrypted; None for no such user, or one whose hash is
        under a key this machine lacks (nobody signs in as them). A hash decrypted is kept
        while the user's configuration is the same (an S3 request asks on every request)."""
        user = self.user(login)
        if user is None:
            return None
        kept = self._hashes.get(login)
        if kept is not None and kept[0] is user:
            return kept[1]
        try:
            key = OperatorKey.load(self._key_file, create=False) if self._key_file else None
            found = stored_hash(user, key)
        except ConfigurationError:
            return None  # not kept: the key may be put in place later
        self._hashes[login] = (user, found)
        return found

    def account(self, login: str) -> Account | Denied:
        """``login``'s account now, or why it has none; made once per configuration view
        (every operation of every session asks)."""
        view = self.config.view
        if self._accounts[0] is not view:
            self._accounts = (view, {})
        made = self._accounts[1]
        found = made.get(login)
        if found is None:
            found = made[login] = self._account(login, view)
        return found

    def _account(self, login: str, view: ConfigView) -> Account | Denied:
        user = view.users.get(login)
        if user is None:
            return Denied(Reason.NOT_FOUND, f"no data user {login}")
        try:
            return account_of(user, view)
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
        said = log.debug if protocol in ONE_REQUEST else log.info
        said("portal session opened", user=login, protocol=protocol, client_address=address)
        return session

    async def report_sessions(self) -> None:
        """Publish the sessions in progress every ``report_period`` s while there are any, and
        once when the last one ends (the monitor's "sessions in progress"); until cancelled."""
        while True:
            await asyncio.sleep(self.report_period)
            if self.sessions or self.reported:
                await self.sessions_reported()

    async def sessions_reported(self) -> None:
        """Publish one report of the sessions open now (at shutdown: none, once they are cut)."""
        open_now = sorted((s for s in self.sessions if not s.closed), key=lambda s: s.opened_at)
        event = PortalSessionsReported(
            envelope=envelope(self.source, self.source),
            portal_id=self.source,
            period_ms=int(self.report_period * 1000),
            sessions=tuple(
                PortalSession(
                    user=s.login,
                    protocol=s.protocol,
                    opened_at=s.opened_at,
                    client_address=s.address,
                )
                for s in open_now
            ),
        )
        await self.publish(self.topics.portal, self.source, event)
        self.reported = bool(open_now)

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

    def staged(self, login: str, destination: str) -> dict[str, Staged]:
        return {
            name: staged
            for (who, dest, name), staged in self._staged.items()
            if who == login and dest == destination
        }

    def stage(self, login: str, destination: str, name: str) -> Staged:
        self._spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = Staged(self._spool / uuid.uuid4().hex)
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

    def unstage(self, login: str, destination: str, name: str) -> Staged | None:
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
            said = log.debug if self.protocol in ONE_REQUEST else log.info
            said("portal session closed", user=self.login, protocol=self.protocol)

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

    async def _place(self, path: PortalPath) -> Place:
        """Where ``path`` is in its destination: for one that groups by date
        (``group_by_date``), its first part is a date folder (the day its transfers were
        queued, UTC, written with ``date_format``) taken off the target."""
        view = self.portal.config.view
        dest = view.destinations.get(path.destination) if path.destination else None
        if dest is None or not dest.group_by_date:
            return Place(path.name)
        days = await self.portal.reads.days(dest.name, self.portal.clock())
        written = day_format(dest.date_format)
        named = {written.format(datetime(d.year, d.month, d.day, tzinfo=UTC)): d for d in days}
        if len(path.parts) == 1:
            return Place("", folders=tuple(sorted(named)))
        day = named.get(path.parts[1])
        return Place("/".join(path.parts[2:]), day, known=day is not None, dated=True)

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
        place = await self._place(path) if destination is not None else Place("")
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

    async def _folder(self, path: PortalPath, place: Place) -> bool:
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

    async def _find(self, destination: str, place: Place) -> Available | None:
        """The file available at ``place`` now: from the read models, or, while they have not
        caught up yet (a file just uploaded), from the ingest index this portal follows."""
        if not place.known or not place.target:
            return None
        now = self.portal.clock()
        found = await self.portal.reads.find(destination, place.target, now, day=place.day)
        if found is not None or place.dated:
            return found
        return fresh(self.portal.ingest, destination, place.target, now)

    def _shown(self, path: PortalPath, entry: Entry) -> Entry:
        size = entry.size if self.may(Operation.SIZE, path) else None
        mtime = entry.mtime if self.may(Operation.MTIME, path) else None
        return Entry(entry.name, entry.folder, size, mtime, entry.available, entry.staged)

    # -- pull -------------------------------------------------------------------------------

    async def open_read(self, path: PortalPath, found: Entry | None = None) -> Download:
        """A download of ``path`` (``get``); ``found``: what ``stat`` just said of it, which
        spares finding the file again in the read models (a door that answers headers first)."""
        await self.check(Operation.GET, path)
        if path.destination is None or not path.name:
            raise Unsupported(f"{path} is a folder")
        if found is not None and found.available is not None:
            item: Available | None = found.available
        else:
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
            async for chunk in read_file(staged.path):
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


def _order(key: str) -> Callable[[Entry], Any]:
    """How entries sort by ``name``, ``size`` or ``mtime`` (name within equals)."""
    if key == "size":
        return lambda e: (e.size or 0, e.name)
    if key == "mtime":
        return lambda e: (e.mtime.timestamp() if e.mtime else 0.0, e.name)
    return lambda e: e.name


def _staged_entry(name: str, staged: Staged) -> Entry:
    return Entry(name, False, staged.size, staged.mtime, staged=True)


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
    "TooLarge",
    "Unsupported",
    "Upload",
]
