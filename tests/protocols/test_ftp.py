"""The FTP module against real pyftpdlib servers: plain FTP, FTPS explicit and FTPS implicit.

Each runs the whole transfer contract, including the server killed mid-transfer (the server
is a subprocess, SIGKILLed and restarted on the same port with the same directory). Then the
FTP specifics: certificate validation on by default, read-only users, LIST fallback on a
server without MLSD, error translation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import aioftp
import pytest

from protocols.base import (
    AuthenticationFailed,
    Location,
    PermissionDenied,
    ProtocolFailure,
    ServerFailure,
    TransferError,
    from_bytes,
    read_all,
)
from protocols.ftp import FtpSettings, seconds, translate
from protocols.registry import connect
from tests.protocols.conftest import TlsFiles
from tests.protocols.contract import MIB, TransferContract
from tests.protocols.ftpserver import FtpServer, free_port

_counter = itertools.count()
PASSWORD = "secret"


class ServerHandle:
    """A ``ServerControl`` over one pyftpdlib subprocess."""

    def __init__(self, server: FtpServer) -> None:
        self.server = server

    async def kill(self) -> None:
        self.server.kill()

    async def restart(self) -> None:
        self.server.start()


def _server(root: Path, tls: str, tls_files: TlsFiles | None) -> Iterator[FtpServer]:
    server = FtpServer(
        root=root,
        port=free_port(),
        password=PASSWORD,
        tls=tls,
        certfile=tls_files.chain if tls_files else None,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_server(ram_dir: Callable[[str], Path]) -> Iterator[FtpServer]:
    yield from _server(ram_dir("ftp"), "none", None)


@pytest.fixture(scope="module")
def explicit_server(ram_dir: Callable[[str], Path], tls_files: TlsFiles) -> Iterator[FtpServer]:
    yield from _server(ram_dir("ftpes"), "explicit", tls_files)


@pytest.fixture(scope="module")
def implicit_server(ram_dir: Callable[[str], Path], tls_files: TlsFiles) -> Iterator[FtpServer]:
    yield from _server(ram_dir("ftps"), "implicit", tls_files)


def _location(server: FtpServer, tls_files: TlsFiles | None, **extra: str) -> Location:
    base = f"t{next(_counter)}"
    (server.root / base).mkdir()
    options = dict(extra)
    if server.tls != "none":
        assert tls_files is not None
        options.update(connectionType=server.tls, cafile=str(tls_files.ca))
    return Location(
        scheme="ftp" if server.tls == "none" else "ftps",
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password,
        path=f"/{base}",
        options=options,
    )


class FtpContract(TransferContract):
    """Shared fixtures: files for the big listing are written straight to the server's disk."""

    server_fixture = "plain_server"

    @pytest.fixture
    def server(self, request: pytest.FixtureRequest) -> FtpServer:
        server: FtpServer = request.getfixturevalue(self.server_fixture)
        return server

    @pytest.fixture
    def location(self, server: FtpServer, tls_files: TlsFiles) -> Location:
        self.root = server.root
        return _location(server, tls_files)

    @pytest.fixture
    def bad_location(self, location: Location) -> Location:
        return replace(location, password="wrong")

    @pytest.fixture
    def kill_server(self, server: FtpServer) -> ServerHandle:
        return ServerHandle(server)

    async def populate(self, location: Location, directory: str, count: int) -> None:
        target = self.root / location.path.lstrip("/") / directory
        target.mkdir(parents=True)
        for index in range(count):
            (target / f"f{index:05d}").write_bytes(b"x")


class TestFtpContract(FtpContract):
    """Plain FTP keeps the whole transfer contract."""


class TestFtpsExplicitContract(FtpContract):
    """FTPS with AUTH TLS keeps the whole transfer contract."""

    server_fixture = "explicit_server"


class TestFtpsImplicitContract(FtpContract):
    """FTPS with TLS from the first byte keeps the whole transfer contract."""

    server_fixture = "implicit_server"


async def test_certificate_validation_is_on_by_default(
    explicit_server: FtpServer, tls_files: TlsFiles
) -> None:
    """An FTPS server whose CA is not trusted is refused, permanently, unless strict is off."""
    location = _location(explicit_server, tls_files)
    untrusted = replace(location, options={"connectionType": "explicit"})
    with pytest.raises(ProtocolFailure) as info:
        await connect(untrusted)
    assert info.value.retriable is False
    relaxed = replace(untrusted, options={"strict": "false"})
    connection = await connect(relaxed)
    try:
        await connection.put("ok.bin", from_bytes(b"ok"))
        assert await read_all(connection.get("ok.bin")) == b"ok"
    finally:
        await connection.close()


async def test_implicit_tls_connects_only_with_implicit_option(
    implicit_server: FtpServer, tls_files: TlsFiles
) -> None:
    """Speaking explicit FTPS to an implicit server fails with a retriable error, not a hang."""
    location = _location(implicit_server, tls_files)
    options = {**location.options, "connectionType": "explicit", "commTimeOut": "2s"}
    with pytest.raises(TransferError) as info:
        await connect(replace(location, options=options))
    assert info.value.retriable is True


async def test_plain_ftp_to_a_tls_only_server_is_refused_permanently(
    explicit_server: FtpServer, tls_files: TlsFiles
) -> None:
    """Logging in without TLS where the server demands it is a permanent PermissionDenied."""
    location = replace(_location(explicit_server, tls_files), scheme="ftp", options={})
    with pytest.raises(PermissionDenied) as info:
        await connect(location)
    assert info.value.retriable is False


async def test_get_abandoned_mid_transfer_keeps_the_session_in_step(
    plain_server: FtpServer,
) -> None:
    """Dropping a get while the server is still sending (426 path) leaves the session usable."""
    location = _location(plain_server, None)
    (plain_server.root / location.path.lstrip("/") / "big.bin").write_bytes(bytes(64 * MIB))
    connection = await connect(location)
    try:
        stream = connection.get("big.bin")
        assert len(await anext(stream)) > 0
        await stream.aclose()  # type: ignore[attr-defined]
        assert await connection.size("big.bin") == 64 * MIB
        await connection.put("after.bin", from_bytes(b"after"))
        assert await read_all(connection.get("after.bin")) == b"after"
    finally:
        await connection.close()


async def test_read_only_user_gets_permission_denied(plain_server: FtpServer) -> None:
    """A put by a user without write rights raises PermissionDenied, not retriable."""
    location = _location(plain_server, None)
    reader = replace(location, user="reader")
    connection = await connect(reader)
    try:
        with pytest.raises(PermissionDenied) as info:
            await connection.put("nope.bin", from_bytes(b"x"), mkdirs=False)
        assert info.value.retriable is False
        assert [e.name for e in await connection.list(".")] == []
    finally:
        await connection.close()


async def test_put_without_tmp_writes_final_name_directly(plain_server: FtpServer) -> None:
    """With usetmp=false the put STORs the final name and the bytes land there."""
    location = _location(plain_server, None, usetmp="false")
    connection = await connect(location)
    try:
        await connection.put("direct.bin", from_bytes(b"direct"))
        assert (plain_server.root / location.path.lstrip("/") / "direct.bin").read_bytes() == (
            b"direct"
        )
    finally:
        await connection.close()


async def test_listing_falls_back_to_list_without_mlsd(ram_dir: Callable[[str], Path]) -> None:
    """Without MLSD/MLST/SIZE, listing parses LIST lines and size falls back to a listing."""
    server = FtpServer(root=ram_dir("nomlsd"), port=free_port(), mlsd=False)
    server.start()
    try:
        connection = await connect(_location(server, None))
        try:
            await connection.put("a.bin", from_bytes(b"abc"))
            await connection.put("sub/b.bin", from_bytes(b"bb"), mkdirs=True)
            flat = {e.name: e for e in await connection.list(".")}
            deep = {e.name: e.size for e in await connection.list(".", recursive=True)}
            assert await connection.size("sub/b.bin") == 2
        finally:
            await connection.close()
    finally:
        server.stop()
    assert set(flat) == {"a.bin", "sub"}
    assert flat["sub"].is_dir
    assert flat["a.bin"].size == 3
    assert flat["a.bin"].mtime is not None
    assert deep["a.bin"] == 3
    assert deep["sub/b.bin"] == 2


def test_implicit_ftps_defaults_to_port_990() -> None:
    """connectionType=implicit without a port means port 990; explicit keeps 21."""
    implicit = Location.parse("ftps://h/p", connectionType="implicit")
    assert FtpSettings.of(implicit).port == 990
    assert FtpSettings.of(Location.parse("ftps://h/p")).port == 21
    assert FtpSettings.of(implicit).verify is True
    assert FtpSettings.of(Location.parse("ftps://h/p", sslValidation="no")).verify is False


def test_reply_codes_translate_to_project_errors() -> None:
    """530 is an auth failure, 550 permission text is denial, 4xx replies are retriable."""

    def reply(code: str, text: str) -> aioftp.StatusCodeError:
        return aioftp.StatusCodeError(aioftp.Code("2xx"), aioftp.Code(code), [text])

    assert isinstance(translate(reply("530", " Login incorrect."), "x"), AuthenticationFailed)
    assert isinstance(translate(reply("550", " Permission denied."), "x"), PermissionDenied)
    assert isinstance(translate(reply("553", " Bad name."), "x"), PermissionDenied)
    transient = translate(reply("421", " Too many connections."), "x")
    assert isinstance(transient, ServerFailure)
    assert transient.retriable


def test_duration_options_parse() -> None:
    """Duration options accept ms, s, m and plain seconds."""
    assert seconds("500ms", 1) == 0.5
    assert seconds("2m", 1) == 120
    assert seconds("15", 1) == 15
    assert seconds(None, 7) == 7
