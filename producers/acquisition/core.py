"""The pure decisions of acquisition: which listed entries are wanted, and which are new.

Nothing here touches the network, the disk or the clock (``now`` is a parameter). Rules kept
(ECPDS-REFERENCE.md §3.2):

- options come from the host's ``acquisition.*`` properties, overridden by the listing line's
  ``[key=value]`` options (bare or prefixed names);
- an entry is selected when it is not a directory, is not a symlink unless ``useSymlink``, its
  name matches the line's ``{regex}`` in full, and its size and age pass ``filesize`` and
  ``fileage`` (an entry without a modification time fails an age filter: its age is unknown);
- the dedup key is (destination, rendered target); a key never seen is ``NEW``; an acquired one
  is ``REWRITTEN`` only when the requeue rule says so: newer mtime AND different size by default
  (``requeueonupdate``), newer mtime alone (``requeueonsamesize``), any other mtime
  (``uniqueByNameAndTime``), or never (``requeueonupdate=no``);
- a failed retrieval is tried again at the next poll when it was retriable (or when
  ``requeueOnFailure`` is set), else only once the provider shows the file changed.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bus.events.acquisition import DiscoveryReason
from bus.templates.filters import Filter, parse_duration_ms, parse_filter
from bus.templates.listing import ResolvedListing
from bus.templates.names import MetadataTemplate, NameContext, parse_metadata, parse_name
from protocols.base import Entry

PREFIX = "acquisition."
DEFAULT_POLLING_MS = 600_000
DEFAULT_MAXIMUM_DURATION_MS = 600_000

_TRUE = frozenset({"1", "yes", "true", "on"})


class RequeueRule(StrEnum):
    """When an already acquired file is acquired again."""

    UPDATE = "update"  # newer mtime AND different size (default)
    SAME_SIZE = "same-size"  # newer mtime, whatever the size
    NAME_AND_TIME = "name-and-time"  # any other mtime is another file
    NEVER = "never"


class Status(StrEnum):
    """Where the latest acquisition of a key stands."""

    PENDING = "pending"  # discovered, no outcome yet (in flight, or a crash)
    ACQUIRED = "acquired"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Known:
    """What the event log says about one dedup key."""

    host_id: str
    path: str
    size: int | None  # of the latest attempt
    mtime: datetime | None
    status: Status
    reason: DiscoveryReason = DiscoveryReason.NEW
    retriable: bool = True
    acquired_size: int | None = None  # of the latest successful acquisition
    acquired_mtime: datetime | None = None
    data_file_id: str | None = None


@dataclass(frozen=True, slots=True)
class Options:
    """The acquisition options of one listing line."""

    filesize: Filter | None = None
    fileage: Filter | None = None
    use_symlink: bool = False
    recursive: bool = False
    requeue: RequeueRule = RequeueRule.UPDATE
    requeue_on_failure: bool = False
    target: str = "$target"
    metadata: MetadataTemplate | None = None
    priority: int = 99
    lifetime_ms: int | None = None
    standby: bool = False
    notify: bool = False
    delete_original: bool = False
    remove_parameters: bool = False
    size_check: bool = True
    maximum_duration_ms: int = DEFAULT_MAXIMUM_DURATION_MS
    retrieval_maximum_duration_ms: int = DEFAULT_MAXIMUM_DURATION_MS


def _merged(host_options: Mapping[str, str], line: Mapping[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in (host_options, line):
        for key, value in source.items():
            bare = key[len(PREFIX) :] if key.startswith(PREFIX) else key
            merged[bare.lower()] = value
    return merged


def parse_options(
    host_options: Mapping[str, str], line: Mapping[str, str] | None = None
) -> Options:
    """The options of a line: host ``acquisition.*`` properties, the line's own winning.

    Raises ``TemplateError`` (a ``ConfigurationError``-like message) for a malformed value."""
    o = _merged(host_options, line or {})

    def flag(name: str, default: bool = False) -> bool:
        value = o.get(name.lower())
        return default if value is None else value.strip().lower() in _TRUE

    rule = RequeueRule.UPDATE
    if flag("uniqueByNameAndTime"):
        rule = RequeueRule.NAME_AND_TIME
    elif flag("requeueonsamesize"):
        rule = RequeueRule.SAME_SIZE
    elif not flag("requeueonupdate", True):
        rule = RequeueRule.NEVER
    metadata = o.get("metadata")
    target = o.get("target") or "$target"
    parse_name(target)  # checked now: a bad template fails the poll, not each file
    return Options(
        filesize=parse_filter(o["filesize"], kind="size") if o.get("filesize") else None,
        fileage=parse_filter(o["fileage"], kind="age") if o.get("fileage") else None,
        use_symlink=flag("useSymlink"),
        recursive=flag("recursive") or flag("listRecursive"),
        requeue=rule,
        requeue_on_failure=flag("requeueOnFailure"),
        target=target,
        metadata=parse_metadata(metadata) if metadata else None,
        priority=int(o.get("priority", "99")),
        lifetime_ms=parse_duration_ms(o["lifetime"]) if o.get("lifetime") else None,
        standby=flag("standby"),
        notify=flag("event"),
        delete_original=flag("deleteoriginal"),
        remove_parameters=flag("removeParameters"),
        size_check=not flag("skipPostRetrievalSizeCheck"),
        maximum_duration_ms=parse_duration_ms(o["maximumduration"])
        if o.get("maximumduration")
        else DEFAULT_MAXIMUM_DURATION_MS,
        retrieval_maximum_duration_ms=parse_duration_ms(o["retrievalmaximumduration"])
        if o.get("retrievalmaximumduration")
        else DEFAULT_MAXIMUM_DURATION_MS,
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A selected entry with its rendered target and metadata."""

    path: str  # remote path as the connection gets it
    name: str  # entry name relative to the listed directory
    size: int
    mtime: datetime | None
    target: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def selected(entry: Entry, listing: ResolvedListing, options: Options, now: datetime) -> bool:
    """Whether a listed entry passes the line's regex, symlink, size and age rules."""
    if entry.is_dir or (entry.is_symlink and not options.use_symlink):
        return False
    name = entry.name
    if options.remove_parameters:
        name = name.split("?", 1)[0]
    if listing.regex is not None and not listing.regex.fullmatch(name.rpartition("/")[2]):
        return False
    if options.filesize is not None and not options.filesize.matches(entry.size):
        return False
    age = options.fileage
    return age is None or (entry.mtime is not None and age.matches(now - entry.mtime))


def candidate(
    entry: Entry, listing: ResolvedListing, options: Options, destination: str, now: datetime
) -> Candidate:
    """The entry with its target (``acquisition.target``) and metadata rendered."""
    name = entry.name.split("?", 1)[0] if options.remove_parameters else entry.name
    base = listing.path
    path = (
        (base + entry.name if base.endswith("/") else f"{base}/{entry.name}")
        if base
        else entry.name
    )
    if options.target == "$target" and options.metadata is None:
        # the common case, and the one a 100,000-entry listing must not pay a render for
        return Candidate(path, name, entry.size, entry.mtime, name.lstrip("/"))
    context = NameContext(
        target=name,
        original=path,
        name=name.rpartition("/")[2],
        now=now,
        link=path,
        destination=destination,
        timestamp=int(entry.mtime.timestamp() * 1000) if entry.mtime else None,
    )
    target = parse_name(options.target).render(context).lstrip("/")
    metadata = options.metadata.render(context) if options.metadata is not None else {}
    return Candidate(path, name, entry.size, entry.mtime, target, dict(metadata))


def select(
    entries: Iterable[Entry],
    listing: ResolvedListing,
    options: Options,
    destination: str,
    now: datetime,
) -> list[Candidate]:
    """The entries of one listing that pass its rules, as candidates."""
    return [
        candidate(e, listing, options, destination, now)
        for e in entries
        if selected(e, listing, options, now)
    ]


def rewritten(
    old_size: int | None,
    old_mtime: datetime | None,
    size: int | None,
    mtime: datetime | None,
    rule: RequeueRule,
) -> bool:
    """Whether a file listed with ``size``/``mtime`` is a new version of an acquired one."""
    if rule is RequeueRule.NEVER:
        return False
    if rule is RequeueRule.NAME_AND_TIME:
        return mtime != old_mtime
    newer = mtime is not None and old_mtime is not None and mtime > old_mtime
    if rule is RequeueRule.SAME_SIZE:
        return newer
    return newer and size != old_size


def decide(known: Known | None, found: Candidate, options: Options) -> DiscoveryReason | None:
    """Why ``found`` should be acquired now, or None if it is already known (see the rules)."""
    return reason_for(known, found.size, found.mtime, options)


def reason_for(
    known: Known | None, size: int | None, mtime: datetime | None, options: Options
) -> DiscoveryReason | None:
    """``decide`` for a file listed with ``size`` and ``mtime``."""
    if known is None:
        return DiscoveryReason.NEW
    if known.status is Status.ACQUIRED:
        changed = rewritten(known.acquired_size, known.acquired_mtime, size, mtime, options.requeue)
        return DiscoveryReason.REWRITTEN if changed else None
    if known.status is Status.PENDING or known.retriable or options.requeue_on_failure:
        return known.reason  # the attempt never finished, or may succeed now
    if (size, mtime) != (known.size, known.mtime):
        return known.reason  # a permanent failure, but the provider changed the file since
    return None


def discover(
    entries: Iterable[Entry],
    listing: ResolvedListing,
    options: Options,
    destination: str,
    now: datetime,
    known: Callable[[str], Known | None],
    skip: Container[str],
) -> tuple[int, list[tuple[Candidate, DiscoveryReason]]]:
    """The entries that pass the line's rules (their count) and those to acquire now, with
    why; targets in ``skip`` (in flight, or already taken by an earlier line) are left out.

    With the default target the dedup lookup comes first, so a listing of many known files
    costs a dict lookup per entry, not a rendered candidate."""
    plain = options.target == "$target" and options.metadata is None
    plain = plain and not options.remove_parameters
    matched = 0
    new: list[tuple[Candidate, DiscoveryReason]] = []
    for entry in entries:
        if not selected(entry, listing, options, now):
            continue
        matched += 1
        found = None if plain else candidate(entry, listing, options, destination, now)
        target = entry.name.lstrip("/") if found is None else found.target
        if target in skip:
            continue
        reason = reason_for(known(target), entry.size, entry.mtime, options)
        if reason is not None:
            found = found or candidate(entry, listing, options, destination, now)
            new.append((found, reason))
    return matched, new
