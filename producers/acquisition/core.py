"""The pure decisions of acquisition: which listed entries are wanted, and which are new.

Nothing here touches the network, the disk or the clock (``now`` is a parameter). Rules kept
(ECPDS-REFERENCE.md §3.2):

- options come from the host's ``acquisition.*`` properties, overridden by the listing line's
  ``[key=value]`` options (bare or prefixed names);
- an entry is selected when it is not a directory, is not a symlink unless ``useSymlink``, its
  name matches the line's ``{regex}`` in full, and its size and age pass ``filesize`` and
  ``fileage`` (an entry without a modification time fails an age filter: its age is unknown);
- the dedup key is (destination, rendered target); a key never seen is ``NEW``; an acquired one
  is ``REWRITTEN`` only when the requeue rule says so: newer mtime, whatever the size, by default
  (``requeueonsamesize``, on unless set to ``no``), newer mtime AND different size
  (``requeueonsamesize=no``, OpenECPDS's ``requeueonupdate``), any other mtime
  (``uniqueByNameAndTime``), or never (``requeueonupdate=no``);
- times are compared at the listing's precision: a listing that rounds times down
  (``Entry.exact_time`` false: FTP ``LIST``) proves a rewrite only from a later minute (or day);
  a time within the recorded one's minute is *ambiguous* and the poll asks the server's exact
  time (FTP ``MDTM``) before deciding;
- a file is taken only once it is known whole (``Completeness``): its companion file is listed
  beside it (``companion``, when set), or it is older than the lower bound of ``fileage``, or it
  was seen with the same size and time across listings ``stableInterval`` apart (``stable``, on
  by default; the poll keeps those sightings in ``Sightings``); ``stable=no`` takes it as listed;
- a failed retrieval is tried again at the next poll when it was retriable (or when
  ``requeueOnFailure`` is set), else only once the provider shows the file changed.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bus.events.acquisition import Completeness, DiscoveryReason
from bus.templates.filters import Filter, parse_duration_ms, parse_filter
from bus.templates.listing import ResolvedListing
from bus.templates.names import MetadataTemplate, NameContext, parse_metadata, parse_name
from protocols.base import Entry

PREFIX = "acquisition."
DEFAULT_POLLING_MS = 600_000
DEFAULT_MAXIMUM_DURATION_MS = 600_000
# A writer silent this long is taken to be done: long enough for a network writer's pauses,
# short beside the 10-minute polling default (Apache Camel's FTP "changed" read lock: 5 s)
DEFAULT_STABLE_INTERVAL_MS = 10_000

_TRUE = frozenset({"1", "yes", "true", "on"})


class RequeueRule(StrEnum):
    """When an already acquired file is acquired again."""

    UPDATE = "update"  # newer mtime AND different size (requeueonsamesize=no)
    SAME_SIZE = "same-size"  # newer mtime, whatever the size (default)
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
    requeue: RequeueRule = RequeueRule.SAME_SIZE
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
    stable: bool = True
    stable_interval_ms: int = DEFAULT_STABLE_INTERVAL_MS
    companion: str | None = None  # "$name.done", or a suffix: ".done"


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

    rule = RequeueRule.SAME_SIZE
    if flag("uniqueByNameAndTime"):
        rule = RequeueRule.NAME_AND_TIME
    elif "requeueonsamesize" in o and flag("requeueonsamesize"):
        rule = RequeueRule.SAME_SIZE  # asked for in so many words: wins over requeueonupdate
    elif not flag("requeueonupdate", True):
        rule = RequeueRule.NEVER
    elif not flag("requeueonsamesize", True):
        rule = RequeueRule.UPDATE
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
        stable=flag("stable", True),
        stable_interval_ms=parse_duration_ms(o["stableinterval"])
        if o.get("stableinterval")
        else DEFAULT_STABLE_INTERVAL_MS,
        companion=o.get("companion") or None,
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


def _covers(listed: datetime, recorded: datetime) -> bool:
    """Whether a time a listing rounded down (``listed``) may stand for ``recorded``: within
    its minute, or its day when it is a midnight (``ls`` shows only the day of old files)."""
    span = timedelta(days=1) if (listed.hour, listed.minute) == (0, 0) else timedelta(minutes=1)
    return listed <= recorded < listed + span


def same_time(listed: datetime | None, recorded: datetime | None, exact: bool = True) -> bool:
    """Whether a listed time is the recorded one, at the listing's precision."""
    if exact or listed is None or recorded is None:
        return listed == recorded
    return _covers(listed, recorded)


def rewritten(
    old_size: int | None,
    old_mtime: datetime | None,
    size: int | None,
    mtime: datetime | None,
    rule: RequeueRule,
    exact: bool = True,
) -> bool | None:
    """Whether a file listed with ``size``/``mtime`` is a new version of an acquired one;
    None when a listing that rounds times down (``exact`` false) cannot tell: ``mtime`` covers
    the recorded time, so only the exact time says whether it was rewritten in that minute."""
    if rule is RequeueRule.NEVER:
        return False
    if rule is RequeueRule.UPDATE and size == old_size:
        return False
    if mtime is None or old_mtime is None:
        return rule is RequeueRule.NAME_AND_TIME and mtime != old_mtime
    if not exact and _covers(mtime, old_mtime):
        return None
    if rule is RequeueRule.NAME_AND_TIME:
        return mtime != old_mtime
    # exact, or rounded down past the recorded time's minute: the true time is later still
    return mtime > old_mtime


def decide(known: Known | None, found: Candidate, options: Options) -> DiscoveryReason | None:
    """Why ``found`` should be acquired now, or None if it is already known (see the rules)."""
    return reason_for(known, found.size, found.mtime, options)


def reason_for(
    known: Known | None,
    size: int | None,
    mtime: datetime | None,
    options: Options,
    exact: bool = True,
) -> DiscoveryReason | None:
    """``decide`` for a file listed with ``size`` and ``mtime`` (rounded down unless
    ``exact``: an ambiguous time is not a rewrite here, see ``ambiguous``)."""
    if known is None:
        return DiscoveryReason.NEW
    if known.status is Status.ACQUIRED:
        changed = rewritten(
            known.acquired_size, known.acquired_mtime, size, mtime, options.requeue, exact
        )
        return DiscoveryReason.REWRITTEN if changed else None
    if known.status is Status.PENDING or known.retriable or options.requeue_on_failure:
        return known.reason  # the attempt never finished, or may succeed now
    if size != known.size or not same_time(mtime, known.mtime, exact):
        return known.reason  # a permanent failure, but the provider changed the file since
    return None


def ambiguous(
    known: Known | None, size: int | None, mtime: datetime | None, options: Options
) -> bool:
    """Whether an acquired file listed with a rounded-down time may have been rewritten within
    the recorded time's minute: only its exact time can tell."""
    if known is None or known.status is not Status.ACQUIRED:
        return False
    old = (known.acquired_size, known.acquired_mtime)
    return rewritten(*old, size, mtime, options.requeue, exact=False) is None


def settled(recorded: datetime, now: datetime, margin: timedelta) -> bool:
    """Whether an exact time checked at ``now`` can no longer be followed by a rewrite within
    its minute (its minute is over, with ``margin`` for the server's clock): from then on a
    rewrite shows a later minute in the listing."""
    return now >= recorded.replace(second=0, microsecond=0) + timedelta(minutes=1) + margin


def companion_of(options: Options, name: str) -> str | None:
    """The name of ``name``'s companion file (``companion`` with ``$name`` replaced, or the
    name with ``companion`` appended: ``.done`` -> ``a.grib.done``), None when not set."""
    spec = options.companion
    if not spec:
        return None
    return spec.replace("$name", name) if "$name" in spec else name + spec


def vouched(options: Options) -> Completeness | None:
    """What vouches that a selected file is whole without watching it, by the line's options:
    its companion (``discover`` passes only files whose companion is listed), its age (a lower
    bound of ``fileage``, checked by ``selected``), nothing (``stable=no``); None: it must be
    seen stable first (``Sightings``)."""
    if options.companion:
        return Completeness.COMPANION
    age = options.fileage
    if age is not None and age.operator in (">>", ">=") and age.threshold > 0:
        return Completeness.AGE
    if not options.stable:
        return Completeness.LISTED
    return None


Sighting = tuple[int, datetime | None, float]  # size, listed time, first seen (monotonic s)


@dataclass(slots=True)
class Sightings:
    """When each candidate was first listed with its current size and time (the stability
    rule's memory; a key not seen for a while is forgotten by ``keep``)."""

    seen: dict[tuple[str, ...], Sighting] = field(default_factory=dict)

    def stable_in(self, key: tuple[str, ...], entry: Entry, now: float, interval: float) -> float:
        """Seconds until ``entry`` counts as stable (0: now); a changed size or time starts
        the wait again."""
        last = self.seen.get(key)
        if last is None or (last[0], last[1]) != (entry.size, entry.mtime):
            self.seen[key] = (entry.size, entry.mtime, now)
            return interval
        return max(last[2] + interval - now, 0.0)

    def forget(self, key: tuple[str, ...]) -> None:
        self.seen.pop(key, None)

    def keep(self, prefix: tuple[str, ...], listed: Container[tuple[str, ...]]) -> None:
        """Forget the keys under ``prefix`` that a complete poll no longer offered."""
        n = len(prefix)
        for key in [k for k in self.seen if k[:n] == prefix and k not in listed]:
            del self.seen[key]


@dataclass(slots=True)
class Discovery:
    """What one listing offers: the files to acquire (once known whole), with the entry as
    listed, and the acquired ones whose rounded-down time cannot tell a rewrite."""

    matched: int = 0
    new: list[tuple[Candidate, DiscoveryReason, Entry]] = field(default_factory=list)
    unsure: list[tuple[Entry, Known]] = field(default_factory=list)
    awaiting_companion: int = 0


def discover(
    entries: Iterable[Entry],
    listing: ResolvedListing,
    options: Options,
    destination: str,
    now: datetime,
    known: Callable[[str], Known | None],
    skip: Container[str],
) -> Discovery:
    """The entries that pass the line's rules (their count) and those to acquire now, with
    why; targets in ``skip`` (in flight, or already taken by an earlier line) are left out, and
    so are files whose ``companion`` is not listed yet.

    With the default target the dedup lookup comes first, so a listing of many known files
    costs a dict lookup per entry, not a rendered candidate."""
    plain = options.target == "$target" and options.metadata is None
    plain = plain and not options.remove_parameters
    if options.companion:
        entries = list(entries)
        present = {e.name for e in entries if not e.is_dir}  # the companions are not selected
    result = Discovery()
    for entry in entries:
        if not selected(entry, listing, options, now):
            continue
        result.matched += 1
        found = None if plain else candidate(entry, listing, options, destination, now)
        target = entry.name.lstrip("/") if found is None else found.target
        if target in skip:
            continue
        record = known(target)
        reason = reason_for(record, entry.size, entry.mtime, options, entry.exact_time)
        if reason is None:
            if (
                record is not None
                and not entry.exact_time
                and ambiguous(record, entry.size, entry.mtime, options)
            ):
                result.unsure.append((entry, record))
            continue
        companion = companion_of(options, entry.name)
        if companion is not None and companion not in present:
            result.awaiting_companion += 1
            continue
        found = found or candidate(entry, listing, options, destination, now)
        result.new.append((found, reason, entry))
    return result
