"""Who may use the monitor: web users (sign-in, sessions, roles, CSRF) and script tokens.

Rules kept here:

- Web users live in ``<secrets>/web-users``, one ``login:role:argon2hash`` line each (roles
  viewer < operator < administrator). When the file does not exist it is created (mode 0600, in
  a 0700 directory) with an ``admin`` administrator whose random password is written to
  ``<secrets>/admin.password`` (mode 0600) and nowhere else: never logged, never printed.
- The session cookie is signed (Starlette's SessionMiddleware, itsdangerous) with a key kept in
  ``<secrets>/monitor-session.key`` (created 0600), so sessions survive a restart.
- A session is versioned: it carries the user's *session stamp*, a digest of the user's role,
  password hash and session epoch (``<secrets>/monitor-sessions``, ``login:epoch`` lines). A
  password change, a role change or a removal changes or ends the stamp, and sign-out bumps the
  epoch: every session of that user ends at once, whoever edited the files. Sessions also end
  after ``idle`` seconds unused and ``max_age`` seconds in all (``Sessions.valid``).
- Passwords are checked by the sign-in defender (``bus.signin``): off the event loop, the same
  cost for an unknown login, refused unchecked while the address or account is banned.
- Every state-changing request carries the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``), compared in constant time; script calls with a bearer token need none (no
  ambient cookie authority).
- Script tokens use the API token file (``<secrets>/api-tokens``, ``bus.tokens``); a token
  caller acts with its role: a viewer token reads only, an operator token may act.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from bus.config.secrets import hash_password
from bus.private import create_private, replace_private
from bus.tokens import TokenFile

WEB_USERS = "web-users"
ADMIN_PASSWORD = "admin.password"  # noqa: S105 (a file name, not a password)
SESSION_KEY = "monitor-session.key"
SESSION_EPOCHS = "monitor-sessions"


class Role(IntEnum):
    """What a user may do; a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMINISTRATOR = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        return cls[text.strip().upper()]


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in caller: a web user by login, or a script token (``token:<name>``)."""

    login: str
    role: Role

    @property
    def can_act(self) -> bool:
        return self.role >= Role.OPERATOR


def session_key(secrets_dir: Path) -> str:
    """The session signing key, created on first use."""
    path = secrets_dir / SESSION_KEY
    if not path.exists():
        create_private(path, secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


class WebUsers:
    """The web-users file, re-read whenever its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = None
        self._users: dict[str, tuple[Role, str]] = {}
        self._epoch_cache: tuple[int | None, dict[str, int]] = (None, {})

    @classmethod
    def open(cls, secrets_dir: Path) -> WebUsers:
        """The users of ``secrets_dir``; a missing file is created with an ``admin`` user whose
        password goes to ``admin.password`` (0600) only."""
        path = secrets_dir / WEB_USERS
        if not path.exists():
            password = secrets.token_urlsafe(18)
            header = (
                "# monitor web users: login:role:argon2hash (roles viewer operator administrator)\n"
            )
            line = f"admin:administrator:{hash_password(password)}\n"
            if create_private(path, header + line):
                (secrets_dir / ADMIN_PASSWORD).unlink(missing_ok=True)
                create_private(secrets_dir / ADMIN_PASSWORD, password + "\n")
        return cls(path)

    def _reload(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        if stamp == self._stamp:
            return
        users: dict[str, tuple[Role, str]] = {}
        for raw in self.path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            login, role, digest = [*line.split(":", 2), "", ""][:3]
            try:
                users[login] = (Role.parse(role), digest)
            except KeyError:
                continue  # an unknown role grants nothing
        self._users, self._stamp = users, stamp

    def add(self, login: str, role: Role, password: str) -> None:
        """Append a user (used by tests and operators' scripts)."""
        if not login or ":" in login:
            raise ValueError(f"not a login: {login!r}")
        with self.path.open("a") as out:
            out.write(f"{login}:{role.name.lower()}:{hash_password(password)}\n")

    def role_of(self, login: str) -> Role | None:
        """The role of ``login`` as the file says now (None: no such user any more)."""
        self._reload()
        found = self._users.get(login)
        return found[0] if found else None

    def logins(self) -> list[tuple[str, Role]]:
        """Every user and role, in file order (never the hashes)."""
        self._reload()
        return [(login, role) for login, (role, _) in self._users.items()]

    def set_role(self, login: str, role: Role) -> bool:
        """Give ``login`` ``role`` (its sessions end at its next request); False: no such user."""
        return self._edit(login, lambda rest: f"{login}:{role.name.lower()}:{rest}")

    def remove(self, login: str) -> bool:
        """Remove ``login`` (its sessions end at its next request); False: no such user."""
        return self._edit(login, lambda _: None)

    def _edit(self, login: str, change: Callable[[str], str | None]) -> bool:
        """Rewrite the file with ``login``'s line changed (``change`` gets the hash, returns the
        new line or None to drop it); comments and order kept."""
        lines, found = [], False
        for raw in self.path.read_text().splitlines():
            if not raw.startswith("#") and raw.partition(":")[0] == login:
                found = True
                new = change(raw.split(":", 2)[2] if raw.count(":") >= 2 else "")
                if new is not None:
                    lines.append(new)
            else:
                lines.append(raw)
        if found:
            replace_private(self.path, "".join(f"{line}\n" for line in lines))
            self._stamp = None
        return found

    def lookup(self, login: str) -> tuple[Role, str] | None:
        """The role and password hash of ``login`` as the file says now (None: no such user)."""
        self._reload()
        return self._users.get(login)

    def _epochs(self) -> dict[str, int]:
        path = self.path.parent / SESSION_EPOCHS
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            self._epoch_cache = (None, {})
            return {}
        if self._epoch_cache[0] == stamp:
            return self._epoch_cache[1]
        epochs: dict[str, int] = {}
        for raw in path.read_text().splitlines():
            login, _, number = raw.strip().rpartition(":")
            if login and number.isdigit():
                epochs[login] = int(number)
        self._epoch_cache = (stamp, epochs)
        return epochs

    def stamp(self, login: str) -> str | None:
        """The session stamp of ``login`` now (None: no such user); a session whose stamp
        differs is over."""
        found = self.lookup(login)
        if found is None:
            return None
        role, digest = found
        epoch = self._epochs().get(login, 0)
        text = f"{login}\n{role.name}\n{digest}\n{epoch}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def end_sessions(self, login: str) -> None:
        """End every session of ``login`` (sign-out): its epoch moves on, atomically on disk."""
        epochs = dict(self._epochs())
        epochs[login] = epochs.get(login, 0) + 1
        text = "".join(f"{name}:{number}\n" for name, number in sorted(epochs.items()))
        replace_private(self.path.parent / SESSION_EPOCHS, text)


@dataclass(frozen=True, slots=True)
class Sessions:
    """When a signed session is still good: the user's stamp unchanged, used within ``idle``
    seconds, begun within ``max_age`` seconds (times in seconds since the epoch)."""

    idle: float = 3600.0
    max_age: float = 12 * 3600.0

    def valid(self, session: dict[str, object], stamp: str | None, now: float) -> bool:
        begun, seen, held = session.get("begun"), session.get("seen"), session.get("stamp")
        return (
            stamp is not None
            and isinstance(held, str)
            and hmac.compare_digest(held, stamp)
            and isinstance(begun, (int, float))
            and isinstance(seen, (int, float))
            and now - begun < self.max_age
            and now - seen < self.idle
        )


class TokenBook:
    """Script tokens (``bus.tokens``: name, role, digest), re-read whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = TokenFile(path)

    def check(self, token: str) -> User | None:
        """The caller acting with ``token`` (a viewer or an operator), or None."""
        found = self._file.check(token)
        return User(f"token:{found.name}", Role.parse(found.role)) if found else None


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(expected: object, given: str | None) -> bool:
    """Whether the request's token is the session's (constant-time)."""
    return (
        isinstance(expected, str)
        and bool(expected)
        and given is not None
        and hmac.compare_digest(expected.encode(), given.encode())
    )
