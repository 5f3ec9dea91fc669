"""The SFTP module against real servers: OpenSSH ``sshd`` (key auth as root) and asyncssh.

Both run the whole transfer contract, including the server killed mid-transfer. Then the SFTP
specifics: host key pinning (fingerprint and known_hosts), keys with a passphrase, chmod after
put, the AES-GCM preference, many concurrent puts over one connection, and a large put and get
across many key re-exchanges that OpenSSH's sshd starts (a small ``RekeyLimit``).

Servers bind 127.0.0.1 on a free port, keep files in a private temp dir, and can be killed
abruptly (sshd's per-connection children too) and restarted on the same port with the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest

from bus.events.transfers import Fault, Verification
from consumers.movers.delivery import verify
from protocols.base import (
    AuthenticationFailed,
    ChecksumMismatch,
    LandedSize,
    Location,
    fault_of,
    from_bytes,
    read_all,
)
from protocols.registry import connect
from protocols.sftp import LANDED_KEPT, HostKeyChanged, watch_host_keys
from tests.protocols.contract import TransferContract

SSHD = "/usr/sbin/sshd"
USER = "ecpds"
PASSWORD = "s3cret-pass"
_counter = itertools.count()
# sshd logs in the user running the tests (root in CI: hence PermitRootLogin yes).
LOGIN = pwd.getpwuid(os.getuid()).pw_name

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: sshd forks a child per connection, in its own session."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Sshd:
    """A private OpenSSH sshd that accepts root by key; sftp is ``internal-sftp``."""

    def __init__(self, root: Path, extra_config: str = "") -> None:
        self.root = root
        self.port = free_port()
        self.extra_config = extra_config  # more sshd_config lines (e.g. ``RekeyLimit 8M``)
        self.process: subprocess.Popen[bytes] | None = None
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        self.authorized = root / "authorized_keys"
        self.config = root / "sshd_config"
        self.data = root / "data"

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # privilege separation dir (as root)
            os.makedirs("/run/sshd", exist_ok=True)
        for key in (self.host_key, self.client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        self.authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile none\nAuthorizedKeysFile {self.authorized}\nPermitRootLogin yes\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxStartups 200\n"
            "MaxSessions 50\nLogLevel ERROR\nSubsystem sftp internal-sftp\n" + self.extra_config
        )

    def authorize(self, public_key: str) -> None:
        with self.authorized.open("a") as handle:
            handle.write(public_key.strip() + "\n")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)

    def kill(self) -> None:
        if self.process is None:
            return
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait()
        self.process = None

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def known_hosts_line(self) -> str:
        kind, blob = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def location(self, path: str, **options: str) -> Location:
        merged = {"privateKeyFile": str(self.client_key), "fingerPrint": self.fingerprint()}
        merged.update(options)
        return Location(
            scheme="sftp",
            host="127.0.0.1",
            port=self.port,
            user=LOGIN,
            path=path,
            options=merged,
        )


class _PasswordServer(asyncssh.SSHServer):
    def __init__(self, owner: AsyncsshServer) -> None:
        self._owner = owner

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._owner.connections.add(conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USER and password == PASSWORD


class AsyncsshServer:
    """An asyncssh SFTP server with password auth, chrooted to ``root``, in the test loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.acceptor: asyncssh.SSHAcceptor | None = None
        self.connections: set[asyncssh.SSHServerConnection] = set()

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        root = os.fsencode(self.root)
        self.acceptor = await asyncssh.listen(
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            server_factory=lambda: _PasswordServer(self),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
            allow_scp=False,
            reuse_address=True,
        )

    async def kill(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
            await self.acceptor.wait_closed()
            self.acceptor = None
        for conn in self.connections:
            conn.abort()
        self.connections.clear()
        await asyncio.sleep(0.05)

    def location(self, path: str, password: str = PASSWORD) -> Location:
        return Location(
            scheme="sftp",
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=password,
            path=path,
            options={"fingerPrint": self.host_key.get_fingerprint("sha256")},
        )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.prepare()
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
async def asyncssh_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AsyncsshServer]:
    server = AsyncsshServer(tmp_path_factory.mktemp("asyncssh") / "root")
    await server.start()
    yield server
    await server.kill()


class _SshdControl:
    def __init__(self, server: Sshd) -> None:
        self.server = server

    async def kill(self) -> None:
        self.server.kill()

    async def restart(self) -> None:
        if self.server.process is None:
            await asyncio.to_thread(self.server.start)


class _AsyncsshControl:
    def __init__(self, server: AsyncsshServer) -> None:
        self.server = server

    async def kill(self) -> None:
        await self.server.kill()

    async def restart(self) -> None:
        if self.server.acceptor is None:
            await self.server.start()


def _write_files(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (directory / f"f{index:05d}").write_bytes(b"x")


class TestOpenSshContract(TransferContract):
    """The SFTP module keeps the whole contract against OpenSSH's sshd."""

    @pytest.fixture
    def location(self, sshd: Sshd) -> Location:
        base = sshd.data / f"t{next(_counter)}"
        base.mkdir()
        return sshd.location(str(base))

    @pytest.fixture
    def bad_location(self, sshd: Sshd) -> Location:
        return Location(
            scheme="sftp",
            host="127.0.0.1",
            port=sshd.port,
            user=LOGIN,
            password="wrong",
            path="/",
            options={"fingerPrint": sshd.fingerprint()},
        )

    @pytest.fixture
    def kill_server(self, sshd: Sshd) -> _SshdControl:
        return _SshdControl(sshd)

    async def populate(self, location: Location, directory: str, count: int) -> None:
        _write_files(Path(location.path) / directory, count)


class TestAsyncsshContract(TransferContract):
    """The SFTP module keeps the whole contract against an asyncssh server with passwords."""

    @pytest.fixture
    def location(self, asyncssh_server: AsyncsshServer) -> Location:
        name = f"t{next(_counter)}"
        (asyncssh_server.root / name).mkdir()
        self.disk_root = asyncssh_server.root
        return asyncssh_server.location(f"/{name}")

    @pytest.fixture
    def bad_location(self, asyncssh_server: AsyncsshServer) -> Location:
        return asyncssh_server.location("/", password="wrong")

    @pytest.fixture
    def kill_server(self, asyncssh_server: AsyncsshServer) -> _AsyncsshControl:
        return _AsyncsshControl(asyncssh_server)

    async def populate(self, location: Location, directory: str, count: int) -> None:
        # The server is chrooted: the location's path lives below the server's root dir.
        _write_files(self.disk_root / location.path.lstrip("/") / directory, count)


async def test_pinned_fingerprint_accepts_the_right_host_key(sshd: Sshd) -> None:
    """A location pinned to the server's SHA256 fingerprint connects and works."""
    connection = await connect(sshd.location(str(sshd.data)))
    try:
        assert isinstance(await connection.list("."), list)
    finally:
        await connection.close()


async def test_wrong_fingerprint_is_permanent_auth_failure(sshd: Sshd) -> None:
    """A fingerprint that does not match the host key aborts with a permanent error."""
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(AuthenticationFailed) as info:
        await connect(sshd.location(str(sshd.data), fingerPrint=wrong))
    assert info.value.retriable is False


async def test_known_hosts_file_pins_the_host_key(sshd: Sshd, tmp_path: Path) -> None:
    """A knownHosts file holding the server's key is accepted; one with another key is refused."""
    good = tmp_path / "good_known_hosts"
    good.write_text(sshd.known_hosts_line())
    connection = await connect(sshd.location(str(sshd.data), knownHosts=str(good), fingerPrint=""))
    await connection.close()
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    bad = tmp_path / "bad_known_hosts"
    bad.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    with pytest.raises(AuthenticationFailed):
        await connect(sshd.location(str(sshd.data), knownHosts=str(bad), fingerPrint=""))


class Watcher:
    """Records what the module reports (the port a stage implements by publishing)."""

    def __init__(self) -> None:
        self.seen_keys: list[tuple[str, str, str]] = []
        self.refused_keys: list[tuple[str, str, str, str]] = []

    def seen(self, host_id: str, key_type: str, fingerprint: str) -> None:
        self.seen_keys.append((host_id, key_type, fingerprint))

    def refused(self, host_id: str, key_type: str, fingerprint: str, expected: str) -> None:
        self.refused_keys.append((host_id, key_type, fingerprint, expected))


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    found = Watcher()
    stop = watch_host_keys(found)
    yield found
    stop()


async def test_unpinned_host_key_is_reported_once_connected_without_a_warning(
    sshd: Sshd, watcher: Watcher, caplog: pytest.LogCaptureFixture
) -> None:
    """Without any pin the key is accepted and reported to the watchers for the location's
    host id (the stage records it); nothing is logged at WARNING any more."""
    with caplog.at_level("WARNING", logger="protocols.sftp"):
        location = sshd.location(str(sshd.data), fingerPrint="", hostKeyFor="h1")
        connection = await connect(location)
        await connection.close()
    assert watcher.seen_keys == [("h1", "ssh-ed25519", sshd.fingerprint())]
    assert watcher.refused_keys == []
    assert caplog.text == ""


async def test_learnt_key_is_accepted_silently(sshd: Sshd, watcher: Watcher) -> None:
    """A location carrying the learnt fingerprint connects and reports nothing more."""
    location = sshd.location(
        str(sshd.data), fingerPrint="", hostKeyFor="h1", hostKeyPinned=sshd.fingerprint()
    )
    connection = await connect(location)
    await connection.close()
    assert (watcher.seen_keys, watcher.refused_keys) == ([], [])


async def test_changed_key_is_refused_as_host_key_changed(
    sshd: Sshd, watcher: Watcher, tmp_path: Path
) -> None:
    """A server whose key is not the learnt one is refused before any credential is sent, as
    a non-retriable HostKeyChanged (the host's fault) naming both fingerprints, and the
    refusal is reported to the watchers."""
    changed = Sshd(tmp_path / "changed")
    changed.prepare()  # a fresh host key: the same server after a key change
    changed.authorize(Path(f"{sshd.client_key}.pub").read_text())
    changed.start()
    try:
        location = sshd.location(
            str(sshd.data), fingerPrint="", hostKeyFor="h1", hostKeyPinned=sshd.fingerprint()
        )
        location = Location(
            scheme="sftp",
            host="127.0.0.1",
            port=changed.port,
            user=LOGIN,
            path=str(changed.data),
            options=location.options,
        )
        with pytest.raises(HostKeyChanged) as info:
            await connect(location)
    finally:
        changed.kill()
    error = info.value
    assert (error.fingerprint, error.expected) == (changed.fingerprint(), sshd.fingerprint())
    assert error.retriable is False
    assert fault_of(error) is Fault.HOST
    assert "ecpds host trust-key h1" in str(error)
    refusal = ("h1", "ssh-ed25519", changed.fingerprint(), sshd.fingerprint())
    assert watcher.refused_keys == [refusal]
    assert watcher.seen_keys == []


async def test_operator_fingerprint_wins_over_the_learnt_key(sshd: Sshd, watcher: Watcher) -> None:
    """With fingerPrint set, the learnt pin is not consulted and nothing is reported: the
    operator's option decides (here: right fingerprint, stale learnt one)."""
    location = sshd.location(str(sshd.data), hostKeyFor="h1", hostKeyPinned="SHA256:" + "A" * 43)
    connection = await connect(location)
    await connection.close()
    assert (watcher.seen_keys, watcher.refused_keys) == ([], [])


async def test_private_key_text_with_passphrase(sshd: Sshd) -> None:
    """A PEM private key given as text with its passphrase authenticates; a wrong one does not."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    sshd.authorize(key.export_public_key().decode())
    # Few bcrypt KDF rounds: the format is the same, the test stays fast.
    pem = key.export_private_key(passphrase="open sesame", rounds=50).decode()
    base = sshd.data / f"t{next(_counter)}"
    base.mkdir()
    location = sshd.location(str(base), privateKey=pem, passPhrase="open sesame")
    location = Location(
        scheme="sftp",
        host="127.0.0.1",
        port=sshd.port,
        user=LOGIN,
        path=str(base),
        options={k: v for k, v in location.options.items() if k != "privateKeyFile"},
    )
    connection = await connect(location)
    try:
        await connection.put("k.bin", from_bytes(b"by key"))
        assert (base / "k.bin").read_bytes() == b"by key"
    finally:
        await connection.close()
    wrong = Location(
        scheme=location.scheme,
        host=location.host,
        port=location.port,
        user=LOGIN,
        path=location.path,
        options={**location.options, "passPhrase": "nope"},
    )
    with pytest.raises(AuthenticationFailed):
        await connect(wrong)


async def test_chmod_after_put(sshd: Sshd) -> None:
    """The chmod option sets the octal mode of the final file."""
    base = sshd.data / f"t{next(_counter)}"
    base.mkdir()
    connection = await connect(sshd.location(str(base), chmod="640"))
    try:
        await connection.put("mode.bin", from_bytes(b"m"))
    finally:
        await connection.close()
    assert (base / "mode.bin").stat().st_mode & 0o777 == 0o640


async def test_aes_gcm_preferred_and_cipher_override(sshd: Sshd) -> None:
    """AES-GCM is negotiated by default; the cipher option picks another algorithm."""
    default = await connect(sshd.location(str(sshd.data)))
    chosen = await connect(sshd.location(str(sshd.data), cipher="aes256-ctr"))
    try:
        assert default.cipher == "aes128-gcm@openssh.com"  # type: ignore[attr-defined]
        assert chosen.cipher == "aes256-ctr"  # type: ignore[attr-defined]
    finally:
        await default.close()
        await chosen.close()


async def test_many_concurrent_puts_over_one_connection(sshd: Sshd) -> None:
    """Hundreds of puts, and gets beside them, run at once over one connection, all intact."""
    base = sshd.data / f"t{next(_counter)}"
    base.mkdir()
    big = os.urandom(3 * 1024 * 1024 + 5)
    (base / "big.bin").write_bytes(big)
    connection = await connect(sshd.location(str(base)))
    try:
        puts = [
            connection.put(f"s{i:04d}", from_bytes(i.to_bytes(4, "big") * 2560)) for i in range(300)
        ]
        gets = [read_all(connection.get("big.bin")) for _ in range(4)]
        results = await asyncio.gather(*puts, *gets)
        assert results[300:] == [big] * 4
        assert len(await connection.list(".")) == 301
        assert await read_all(connection.get("s0299")) == (299).to_bytes(4, "big") * 2560
    finally:
        await connection.close()


async def test_put_learns_the_final_size_in_the_rename_round_trip(sshd: Sshd) -> None:
    """A put via a temporary name stats the final name beside its rename: ``landed_size``
    gives that size once (the new file's, not the one it replaced); a put without a temporary
    name, or to another name, leaves none."""
    base = sshd.data / f"t{next(_counter)}"
    base.mkdir()
    (base / "same.bin").write_bytes(b"old bytes, longer than the new ones")
    connection = await connect(sshd.location(str(base)))
    assert isinstance(connection, LandedSize)
    try:
        await connection.put("same.bin", from_bytes(b"n" * 1000))
        assert connection.landed_size(f"{base}/other.bin") is None
        assert connection.landed_size(f"{base}/same.bin") == 1000
        assert connection.landed_size(f"{base}/same.bin") is None  # once
        await connection.put("direct.bin", from_bytes(b"d" * 10), use_tmp=False)
        assert connection.landed_size(f"{base}/direct.bin") is None
    finally:
        await connection.close()
    assert (base / "same.bin").read_bytes() == b"n" * 1000


async def test_unchecked_landed_sizes_are_bounded(sshd: Sshd) -> None:
    """Puts nobody checks keep at most ``LANDED_KEPT`` sizes, the newest."""
    base = sshd.data / f"t{next(_counter)}"
    base.mkdir()
    connection = await connect(sshd.location(str(base)))
    assert isinstance(connection, LandedSize)
    try:
        for i in range(LANDED_KEPT + 3):
            await connection.put(f"f{i}", from_bytes(b"x" * (i + 1)))
        assert connection.landed_size(f"{base}/f0") is None  # dropped, oldest first
        last = LANDED_KEPT + 2
        assert connection.landed_size(f"{base}/f{last}") == last + 1
    finally:
        await connection.close()


async def test_delivery_check_takes_a_matching_landed_size_and_asks_again_otherwise(
    sshd: Sshd,
) -> None:
    """The mover's check uses the size learnt at the rename when it matches what was sent; a
    size that does not match is asked again from the server, and then fails the check."""
    base = sshd.data / f"t{next(_counter)}"
    base.mkdir()
    location = sshd.location(str(base))
    connection = await connect(location)
    try:
        await connection.put("ok.bin", from_bytes(b"k" * 64))
        assert await verify(connection, location, "ok.bin", 64, None) is Verification.SIZE
        await connection.put("bad.bin", from_bytes(b"b" * 64))
        (base / "bad.bin").write_bytes(b"b" * 65)  # changed after the put: the server says 65
        with pytest.raises(ChecksumMismatch, match="remote size 65, sent 60"):
            await verify(connection, location, "bad.bin", 60, None)
    finally:
        await connection.close()


async def test_password_auth_on_asyncssh_server(asyncssh_server: AsyncsshServer) -> None:
    """Password authentication works, with the location's password or the password option."""
    location = asyncssh_server.location("/", password="wrong")
    fixed = Location(
        scheme="sftp",
        host="127.0.0.1",
        port=asyncssh_server.port,
        user=USER,
        path="/",
        options={**location.options, "password": PASSWORD},
    )
    connection = await connect(fixed)
    await connection.close()


async def test_put_at_offset_resumes_the_final_file(sshd: Sshd) -> None:
    """A put with an offset keeps the bytes before it and writes the rest in place."""
    base = sshd.data / f"t{next(_counter)}"
    base.mkdir()
    connection = await connect(sshd.location(str(base)))
    try:
        await connection.put("part.bin", from_bytes(b"abcXXX"))
        assert await connection.put("part.bin", from_bytes(b"def"), offset=3) == 3
        assert (base / "part.bin").read_bytes() == b"abcdef"
    finally:
        await connection.close()


async def test_connection_reports_broken_after_server_death(
    asyncssh_server: AsyncsshServer,
) -> None:
    """Once the server drops the SSH connection, the connection says it is broken."""
    connection = await connect(asyncssh_server.location("/"))
    try:
        assert connection.broken is False  # type: ignore[attr-defined]
        await asyncssh_server.kill()
        for _ in range(50):
            if connection.broken:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.02)
        assert connection.broken is True  # type: ignore[attr-defined]
    finally:
        await connection.close()
        await asyncssh_server.start()


REKEY_LIMIT = 8 * 1024 * 1024
REKEY_SIZE = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def rekeying_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("sshd-rekey"), f"RekeyLimit {REKEY_LIMIT}\n")
    server.prepare()
    server.start()
    yield server
    server.kill()


async def test_put_and_get_survive_many_rekeys_started_by_openssh(
    rekeying_sshd: Sshd, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenSSH's sshd with ``RekeyLimit 8M`` re-keys several times during a 64 MiB put and get
    on one connection; both transfers end with the same SHA-256 as the source."""
    base = rekeying_sshd.data / f"t{next(_counter)}"
    base.mkdir()
    source = os.urandom(REKEY_SIZE)
    digest = hashlib.sha256(source).hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, REKEY_SIZE, 1024 * 1024):
            yield source[start : start + 1024 * 1024]

    with caplog.at_level("DEBUG", logger="asyncssh"):
        connection = await connect(rekeying_sshd.location(str(base)))
        try:
            assert await connection.put("big.bin", chunks()) == REKEY_SIZE
            got = hashlib.sha256()
            async for chunk in connection.get("big.bin"):
                got.update(chunk)
        finally:
            await connection.close()
    assert hashlib.sha256((base / "big.bin").read_bytes()).hexdigest() == digest
    assert got.hexdigest() == digest
    exchanges = sum(r.getMessage().endswith("Completed key exchange") for r in caplog.records)
    # one at connect, then one per RekeyLimit of data each way: 2 x 64 MiB / 8 MiB = 16
    assert exchanges - 1 >= 2 * REKEY_SIZE // REKEY_LIMIT - 2
