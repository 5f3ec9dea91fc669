"""SSH host keys learnt and pinned through ``ecpds.config``: what a stage tells its SFTP module,
and the events it proposes when the module reports a key.

Rules kept here:

- A host's key is pinned by the configuration view (``ConfigView.host_keys``, folded from
  ``HostKeyLearned``/``HostKeyTrusted``); a stage passes it to the module as the location
  options ``pin_options`` gives: ``hostKeyFor`` (the host id the module reports keys for) and
  ``hostKeyPinned`` (the pinned fingerprint, when the host has one for its current address).
  An operator's own ``sftp.fingerPrint`` or ``sftp.knownHosts`` wins: then nothing is added
  and nothing is learnt.
- ``HostKeyBook`` receives what the module saw (a key on an unpinned host, a refused key) and
  publishes ``HostKeyLearned`` or ``HostKeyRefused`` once per host and key: the first
  connection records the key, not every one. Two stages proposing at once are harmless: the
  view keeps the first learnt key in the log (``bus.config.view``).
- Each event is keyed ``host-key/<host>/<fingerprint>``: compaction then keeps every key a
  host was ever offered in its first position in the log, so a race's first key still wins
  after compaction; a later event on the same key (a refused key trusted) replaces it.
- Only public fingerprints travel; no key material, never a secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bus.config.view import ConfigView
from bus.events import Event, envelope
from bus.events.config import Host, HostKey
from bus.events.config_changes import HostKeyLearned, HostKeyRefused, HostKeyTrusted
from bus.logging import get_logger
from bus.requests import Invalid

log = get_logger(__name__)

HOST_OPTION = "hostKeyFor"  # the host id the module reports a key for
PIN_OPTION = "hostKeyPinned"  # the fingerprint the module must see
OVERRIDES = ("fingerPrint", "knownHosts")  # the operator's own pinning: nothing learnt then
PROTOCOLS = frozenset({"sftp"})  # the modules that check host keys

Publish = Callable[[str, Event], Awaitable[object]]  # (key, event) on the config topic
Mark = tuple[str, str, str]  # what a proposal was: event type, event key, what it was against


def key_address(host: Host) -> str:
    """The part of a host's address a key belongs to: ``host[:port]``, the base path cut."""
    return host.address.partition("/")[0]


def event_key(key: HostKey) -> str:
    """The Kafka key of a host key event on ``ecpds.config``."""
    return f"host-key/{key.host_id}/{key.fingerprint}"


def pinned(view: ConfigView, host: Host) -> HostKey | None:
    """The key pinned for ``host`` at its current address, or None (not learnt yet)."""
    key = view.host_keys.get(host.id)
    return key if key is not None and key.address == key_address(host) else None


def pin_options(view: ConfigView, host: Host) -> dict[str, str]:
    """The location options that make the module check ``host``'s key (empty when the host's
    protocol has no host key or the operator pinned it with ``fingerPrint``/``knownHosts``)."""
    scheme = host.protocol.lower()
    if scheme not in PROTOCOLS:
        return {}
    if any(host.options.get(f"{scheme}.{name}") for name in OVERRIDES):
        return {}
    options = {HOST_OPTION: host.id}
    key = pinned(view, host)
    if key is not None:
        options[PIN_OPTION] = key.fingerprint
    return options


def same_fingerprint(seen: str, wanted: str) -> bool:
    """Whether two SHA256 fingerprints are the same (base64: case matters; pasted values may
    lack the ``SHA256:`` prefix or carry ``=`` padding)."""
    return seen.split(":", 1)[-1].rstrip("=") == wanted.strip().split(":", 1)[-1].rstrip("=")


def learned(
    view: ConfigView, host_id: str, key_type: str, fingerprint: str, source: str
) -> HostKeyLearned | None:
    """The event recording a key seen on an unpinned host, or None (unknown host, or a key
    is already pinned for its address)."""
    host = view.hosts.get(host_id)
    if host is None or pinned(view, host) is not None:
        return None
    key = HostKey(
        host_id=host_id, address=key_address(host), key_type=key_type, fingerprint=fingerprint
    )
    return HostKeyLearned(envelope=envelope(source, host_id), key=key)


def refused(
    view: ConfigView, host_id: str, key_type: str, fingerprint: str, expected: str, source: str
) -> HostKeyRefused | None:
    """The event recording a refused key, or None when the view already records it."""
    host = view.hosts.get(host_id)
    known = view.refused_keys.get(host_id)
    if host is None or (known is not None and known.fingerprint == fingerprint):
        return None
    key = HostKey(
        host_id=host_id, address=key_address(host), key_type=key_type, fingerprint=fingerprint
    )
    return HostKeyRefused(envelope=envelope(source, host_id), key=key, expected=expected)


class Untrustable(Invalid):
    """A trust request that names no key to trust (the CLI refuses it, exit 2)."""


def trusted(
    view: ConfigView, host_id: str, fingerprint: str | None, source: str, actor: str | None
) -> HostKeyTrusted:
    """The event an operator's ``trust-key`` publishes: the given fingerprint, or the key last
    refused for the host when none is given."""
    host = view.hosts.get(host_id)
    if host is None:
        raise Untrustable(f"no host {host_id!r}")
    offered = view.refused_keys.get(host_id)
    if fingerprint is None:
        if offered is None:
            raise Untrustable(
                f"host {host_id} has no refused key: give the key with --fingerprint SHA256:..."
            )
        fingerprint = offered.fingerprint
    fingerprint = fingerprint.strip().rstrip("=")
    if not fingerprint.startswith("SHA256:"):
        raise Untrustable(f"{fingerprint!r} is not a SHA256:... fingerprint (ssh-keygen -l)")
    key_type = ""
    if offered is not None and same_fingerprint(offered.fingerprint, fingerprint):
        key_type = offered.key_type
    key = HostKey(
        host_id=host_id, address=key_address(host), key_type=key_type, fingerprint=fingerprint
    )
    return HostKeyTrusted(envelope=envelope(source, host_id), key=key, actor=actor)


@dataclass
class HostKeyBook:
    """What a stage does with the keys its SFTP module reports: publish the first sighting of
    each (``HostKeyLearned`` or ``HostKeyRefused``) on the configuration topic.

    ``view`` gives the latest configuration; ``publish`` sends one event with its key. The
    module calls ``seen``/``refused`` synchronously, so the publish runs as a task; a failed
    publish is logged and the key proposed again on a later connection."""

    view: Callable[[], ConfigView]
    publish: Publish
    source: str

    def __post_init__(self) -> None:
        self._proposed: set[Mark] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def options(self, host: Host) -> dict[str, str]:
        """The location options that make the module check ``host``'s key (``pin_options``)."""
        return pin_options(self.view(), host)

    def seen(self, host_id: str, key_type: str, fingerprint: str) -> None:
        """The module accepted ``fingerprint`` on an unpinned host: record it."""
        self._propose(learned(self.view(), host_id, key_type, fingerprint, self.source))

    def refused(self, host_id: str, key_type: str, fingerprint: str, expected: str) -> None:
        """The module refused ``fingerprint`` (``expected`` is pinned): record the refusal
        (logged once, with the command that accepts the key; each failed connection is
        reported by the stage as usual)."""
        event = refused(self.view(), host_id, key_type, fingerprint, expected, self.source)
        if self._propose(event):
            log.error(
                "host key refused: not the pinned key",
                host=host_id,
                key_type=key_type,
                fingerprint=fingerprint,
                expected=expected,
                accept=f"ecpds host trust-key {host_id} --fingerprint {fingerprint}",
            )

    def _propose(self, event: HostKeyLearned | HostKeyRefused | None) -> bool:
        """Publish ``event`` unless it is None or was proposed already; True if published.
        A refusal is proposed again once another key is pinned (an operator trusted a key
        that is still not the one offered), a learnt key again at another address."""
        if event is None:
            return False
        against = event.expected if isinstance(event, HostKeyRefused) else event.key.address
        mark = (type(event).__name__, event_key(event.key), against)
        if mark in self._proposed:
            return False
        self._proposed.add(mark)
        task = asyncio.get_running_loop().create_task(self._send(mark, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, mark: Mark, event: HostKeyLearned | HostKeyRefused) -> None:
        try:
            await self.publish(event_key(event.key), event)
        except Exception as error:
            self._proposed.discard(mark)
            log.warning("host key not recorded", key=event_key(event.key), error=str(error))

    async def drain(self) -> None:
        """Wait for the proposals in flight (a stage's shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
