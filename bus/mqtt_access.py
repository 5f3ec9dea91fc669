"""Subscriber access for the embedded amqtt broker, from the files mosquitto reads.

``consumers.notifier.subscribers`` writes a mosquitto password file (``passwd``: ``login:$7$``
PBKDF2-SHA512 hashes) and ACL file (``acl``: ``user <login>`` sections of ``topic read|write
<filter>``; lines before the first ``user`` are the anonymous client's) from the configuration.
These two amqtt plugins enforce the same files, so the embedded broker and Debian's mosquitto
grant the same: ``FileAuth`` signs clients in against ``passwd``; ``FileTopics`` lets a client
subscribe to and receive what its ``topic read`` filters cover and publish what its ``topic
write`` filters cover. Rules kept here:

- The files are read again whenever their modification time changes (the notifier rewrites
  them on every configuration change): no reload signal, no restart.
- A client without a login connects as the anonymous one (as mosquitto with
  ``allow_anonymous true``, so health probes still connect) and may do only what the ACL's
  anonymous lines grant: by default nothing. A login with a wrong password is refused.
- A subscription outside a client's filters is refused in the SUBACK (mosquitto accepts it
  and delivers nothing); a publish outside them is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

ANONYMOUS = ""


def matches(topic: str, pattern: str) -> bool:
    """Whether MQTT ``topic`` (or a subscription filter) is covered by ``pattern`` (``+``,
    ``#``); a subscription filter is covered only by a pattern as wide or wider."""
    got, want = topic.split("/"), pattern.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(got):
            return False
        if level != "+" and level != got[i]:
            return False
        if level == "+" and got[i] == "#":
            return False
    return len(got) == len(want)


def verify(password: str, stored: str) -> bool:
    """``password`` against mosquitto's ``$7$<iterations>$<salt>$<hash>`` (PBKDF2-SHA512)."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        rounds, salt, want = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return hmac.compare_digest(got, want)


@dataclass
class Rules:
    """The two files as read last, read again when either changes."""

    directory: Path
    passwords: dict[str, str] = field(default_factory=dict)
    reads: dict[str, list[str]] = field(default_factory=dict)
    writes: dict[str, list[str]] = field(default_factory=dict)
    _stamp: tuple[float, float] | None = None

    def current(self) -> Rules:
        stamp = tuple(_mtime(self.directory / name) for name in ("passwd", "acl"))
        if stamp != self._stamp:
            self._load()
            self._stamp = (stamp[0], stamp[1])
        return self

    def _load(self) -> None:
        self.passwords, self.reads, self.writes = {}, {ANONYMOUS: []}, {ANONYMOUS: []}
        passwd, acl = self.directory / "passwd", self.directory / "acl"
        if passwd.exists():
            for line in passwd.read_text().splitlines():
                login, sep, stored = line.strip().partition(":")
                if sep and not login.startswith("#"):
                    self.passwords[login] = stored
        user = ANONYMOUS
        if acl.exists():
            for line in acl.read_text().splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == "user":
                    user = words[1]
                    self.reads.setdefault(user, [])
                    self.writes.setdefault(user, [])
                elif len(words) == 3 and words[0] == "topic":
                    kind = {"read": self.reads, "write": self.writes}.get(words[1])
                    if kind is not None:
                        kind.setdefault(user, []).append(words[2])
                    elif words[1] == "readwrite":
                        self.reads.setdefault(user, []).append(words[2])
                        self.writes.setdefault(user, []).append(words[2])


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


_RULES: dict[str, Rules] = {}


def rules_of(directory: str) -> Rules:
    """The one ``Rules`` of ``directory`` the two plugins share, current."""
    return _RULES.setdefault(directory, Rules(Path(directory))).current()


class FileAuth(BaseAuthPlugin):  # type: ignore[misc]  # amqtt's plugins are untyped
    """Signs clients in against ``passwd``; a client without a login is the anonymous one."""

    @dataclass
    class Config:
        directory: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        if not session.username:
            return True  # the anonymous client: the ACL's anonymous lines decide what it may do
        stored = rules_of(self.config.directory).passwords.get(session.username)
        return stored is not None and verify(session.password or "", stored)


class FileTopics(BaseTopicPlugin):  # type: ignore[misc]  # amqtt's plugins are untyped
    """Lets each client read and write what its ACL lines cover, nothing else."""

    @dataclass
    class Config:
        directory: str = ""

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        if topic is None:
            return False
        rules = rules_of(self.config.directory)
        user = (session.username if session else None) or ANONYMOUS
        table = rules.writes if action == Action.PUBLISH else rules.reads
        return any(matches(topic, pattern) for pattern in table.get(user, ()))
