"""The HTTP module against a real local HTTP server (aiohttp.web in its own process).

The server maps ``/<area>/<path>`` onto one temp directory: ``files`` needs basic auth, ``token``
a bearer token, ``public`` nothing, ``api`` serves JSON listings, ``old`` redirects to
``public``, ``loop`` redirects forever, ``status/<code>`` answers that code. Directories get an
nginx-like autoindex; PUT and POST bodies are spooled outside the tree and moved in when
complete; MOVE, DELETE and MKCOL act like WebDAV. The process is killed with SIGKILL for the
mid-transfer cases and restarted on the same port.

Run as ``python -m tests.protocols.test_http ROOT PORT [CERT KEY]`` it is that server.
"""

from __future__ import annotations

import asyncio
import base64
import html
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
from aiohttp import BodyPartReader, web

from protocols.base import (
    AuthenticationFailed,
    Location,
    NotFound,
    PermissionDenied,
    ProtocolFailure,
    ServerFailure,
    from_bytes,
    read_all,
)
from protocols.registry import connect
from tests.protocols.conftest import TlsFiles
from tests.protocols.contract import TransferContract

USER = "ecpds"
PASSWORD = "http-secret"
TOKEN = "tok-123"
REPO = Path(__file__).resolve().parents[2]
_counter = itertools.count()

# -- the server ----------------------------------------------------------------------------------


def _autoindex(url_path: str, directory: Path) -> str:
    rows = ['<a href="../">../</a>']
    for item in sorted(directory.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
        info = item.stat()
        name = item.name + ("/" if item.is_dir() else "")
        when = datetime.fromtimestamp(info.st_mtime, UTC).strftime("%d-%b-%Y %H:%M")
        size = "-" if item.is_dir() else str(info.st_size)
        label = html.escape(name)
        rows.append(
            f'<a href="{quote(name)}">{label}</a>{" " * max(1, 50 - len(name))}{when}{size:>20}'
        )
    title = html.escape(url_path)
    body = "\n".join(rows)
    return (
        f"<html><head><title>Index of {title}</title></head><body>"
        f"<h1>Index of {title}</h1><hr><pre>{body}\n</pre><hr></body></html>"
    )


def build_app(root: Path, spool: Path) -> web.Application:
    """The test server: files under ``root``, upload bodies spooled in ``spool``."""

    def disk(tail: str) -> Path:
        path = (root / unquote(tail)).resolve()
        if path != root and root not in path.parents:
            raise web.HTTPForbidden()
        return path

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        area = request.path.split("/")[1]
        given = request.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if area == "files" and given != basic:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="t"'})
        if area == "token" and given != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized()
        if area == "header" and request.headers.get("X-Api-Key") != "k1":
            raise web.HTTPForbidden()
        return await handler(request)

    async def spool_body(target: Path, read: Callable[[], Awaitable[bytes]]) -> None:
        # Like nginx: the body lands in a spool file, moved into place only when complete.
        if not target.parent.is_dir():
            raise web.HTTPConflict()
        temp = spool / uuid.uuid4().hex
        try:
            with temp.open("wb") as handle:
                while chunk := await read():
                    handle.write(chunk)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    async def handle(request: web.Request) -> web.StreamResponse:
        area, tail = request.match_info["area"], request.match_info["tail"]
        method = request.method
        if area == "old":
            raise web.HTTPFound(f"/public/{tail}")
        if area == "loop":
            raise web.HTTPFound(f"/loop/{tail}")
        if area == "status":
            return web.Response(status=int(tail.split("/")[0]))
        path = disk(tail)
        if area == "api" and method == "GET":
            if not path.is_dir():
                raise web.HTTPNotFound()
            files = [
                {
                    "fname": p.name,
                    "bytes": p.stat().st_size,
                    "modified": datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat(),
                    "kind": "dir" if p.is_dir() else "file",
                }
                for p in sorted(path.iterdir())
            ]
            return web.json_response({"result": {"files": files}})
        if method in {"GET", "HEAD"}:
            if path.is_file():
                return web.FileResponse(path)
            if path.is_dir():
                if not request.path.endswith("/"):
                    raise web.HTTPMovedPermanently(request.path + "/")
                return web.Response(text=_autoindex(request.path, path), content_type="text/html")
            raise web.HTTPNotFound()
        if method == "PUT":
            await spool_body(path, request.content.readany)
            return web.Response(status=201)
        if method == "POST":
            if request.content_type.startswith("multipart/"):
                reader = await request.multipart()
                part = await reader.next()
                if not isinstance(part, BodyPartReader) or part.filename is None:
                    raise web.HTTPBadRequest()
                folder = path if path.is_dir() else path.parent
                await spool_body(folder / part.filename, lambda: part.read_chunk(1024 * 1024))
            else:
                await spool_body(path, request.content.readany)
            return web.Response(status=201)
        if method == "DELETE":
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                raise web.HTTPNotFound()
            return web.Response(status=204)
        if method == "MKCOL":
            if path.exists():
                raise web.HTTPMethodNotAllowed("MKCOL", [])
            if not path.parent.is_dir():
                raise web.HTTPConflict()
            path.mkdir()
            return web.Response(status=201)
        if method == "MOVE":
            target_tail = urlsplit(request.headers["Destination"]).path.split("/", 2)[2]
            target = disk(target_tail)
            if not path.exists():
                raise web.HTTPNotFound()
            if target.exists() and request.headers.get("Overwrite", "T") == "F":
                raise web.HTTPPreconditionFailed()
            if not target.parent.is_dir():
                raise web.HTTPConflict()
            os.replace(path, target)
            return web.Response(status=201)
        raise web.HTTPMethodNotAllowed(method, [])

    app = web.Application(middlewares=[auth], client_max_size=1024**3)
    app.router.add_route("*", "/{area}/{tail:.*}", handle)
    return app


def serve(root: Path, port: int, cert: str | None, key: str | None) -> None:
    import ssl

    spool = root.parent / f"{root.name}-spool"
    spool.mkdir(exist_ok=True)
    context = None
    if cert and key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    web.run_app(
        build_app(root.resolve(), spool),
        host="127.0.0.1",
        port=port,
        ssl_context=context,
        print=None,
        reuse_address=True,
    )


# -- fixtures ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpServer:
    """The test server as a child process, killable and restartable on the same port."""

    def __init__(self, root: Path, cert: str | None = None, key: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.tls = [cert, key] if cert and key else []
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        argv = [sys.executable, "-m", "tests.protocols.test_http", str(self.root), str(self.port)]
        self.process = subprocess.Popen(
            [*argv, *self.tls], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                raise RuntimeError("test HTTP server exited")
            time.sleep(0.05)
        raise RuntimeError("test HTTP server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def location(self, area: str, path: str, **options: str) -> Location:
        scheme = "https" if self.tls else "http"
        user = USER if area == "files" else None
        return Location(
            scheme=scheme, host="127.0.0.1", port=self.port, user=user,
            password=PASSWORD if user else None, path=f"/{area}/{path}".rstrip("/") + "/",
            options=options,
        )  # fmt: skip


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path_factory.mktemp("http") / "root")
    server.start()
    yield server
    server.kill()


class _Control:
    def __init__(self, server: HttpServer) -> None:
        self.server = server

    async def kill(self) -> None:
        self.server.kill()

    async def restart(self) -> None:
        if self.server.process is None:
            await asyncio.to_thread(self.server.start)


def _fresh_dir(server: HttpServer) -> str:
    name = f"t{next(_counter)}"
    (server.root / name).mkdir()
    return name


class TestHttpWebdavContract(TransferContract):
    """In WebDAV mode the HTTP module keeps the whole contract, rename included."""

    @pytest.fixture
    def location(self, http_server: HttpServer) -> Location:
        return http_server.location("files", _fresh_dir(http_server), webdav="yes")

    @pytest.fixture
    def bad_location(self, http_server: HttpServer) -> Location:
        return Location(
            scheme="http", host="127.0.0.1", port=http_server.port, user=USER,
            password="wrong", path="/files/", options={"webdav": "yes"},
        )  # fmt: skip

    @pytest.fixture
    def kill_server(self, http_server: HttpServer) -> _Control:
        return _Control(http_server)

    async def populate(self, location: Location, directory: str, count: int) -> None:
        folder = self.root / location.path.split("/")[2] / directory
        folder.mkdir(parents=True)
        for index in range(count):
            (folder / f"f{index:05d}").write_bytes(b"x")

    @pytest.fixture(autouse=True)
    def _disk(self, http_server: HttpServer) -> None:
        self.root = http_server.root


async def _put_disk(server: HttpServer, rel: str, data: bytes) -> None:
    target = server.root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


async def test_html_index_listing_skips_parent_and_recurses(http_server: HttpServer) -> None:
    """An autoindex page lists files with sizes and dirs, skips ../ and recurses when asked."""
    name = _fresh_dir(http_server)
    await _put_disk(http_server, f"{name}/a.grib", b"12345")
    await _put_disk(http_server, f"{name}/sub/b.grib", b"xy")
    await _put_disk(http_server, f"{name}/sub/deeper/c.txt", b"z")
    conn = await connect(http_server.location("public", name))
    try:
        top = {e.name: e for e in await conn.list(".")}
        assert set(top) == {"a.grib", "sub"}
        assert (top["a.grib"].size, top["sub"].is_dir) == (5, True)
        assert top["a.grib"].mtime is not None
        deep = await conn.list(".", recursive=True, pattern="*.grib")
        assert {e.name for e in deep if not e.is_dir} == {"a.grib", "sub/b.grib"}
    finally:
        await conn.close()


async def test_use_head_gives_exact_size_and_mtime(http_server: HttpServer) -> None:
    """With useHead=yes sizes and second-precise mtimes come from HEAD answers."""
    name = _fresh_dir(http_server)
    await _put_disk(http_server, f"{name}/h.bin", b"h" * 777)
    stamp = 1_700_000_123
    os.utime(http_server.root / name / "h.bin", (stamp, stamp))
    conn = await connect(http_server.location("public", name, useHead="yes"))
    try:
        (entry,) = await conn.list(".")
        assert entry.size == 777
        assert entry.mtime == datetime.fromtimestamp(stamp, UTC)
    finally:
        await conn.close()


async def test_json_listing_with_field_options(http_server: HttpServer) -> None:
    """parser=json reads names, sizes, times and kinds from the configured fields."""
    name = _fresh_dir(http_server)
    await _put_disk(http_server, f"{name}/one.dat", b"1" * 10)
    (http_server.root / name / "dir").mkdir()
    options = {
        "parser": "json", "arrayPath": "result.files", "nameField": "fname",
        "sizeField": "bytes", "timeField": "modified", "typeField": "kind",
    }  # fmt: skip
    conn = await connect(http_server.location("api", name, **options))
    try:
        listed = {e.name: e for e in await conn.list(".")}
        assert set(listed) == {"one.dat", "dir"}
        assert listed["one.dat"].size == 10
        assert not listed["one.dat"].is_dir
        assert listed["dir"].is_dir
        assert listed["one.dat"].mtime is not None
    finally:
        await conn.close()


async def test_plain_put_and_post_without_webdav(http_server: HttpServer) -> None:
    """Without webdav a put is one PUT (or POST, or multipart POST) to the final name."""
    name = _fresh_dir(http_server)
    for options, file in (({}, "put.bin"), ({"usePost": "yes"}, "post.bin")):
        conn = await connect(http_server.location("public", name, **options))
        try:
            assert await conn.put(file, from_bytes(b"body " + file.encode())) == 5 + len(file)
        finally:
            await conn.close()
    multipart = await connect(
        http_server.location("public", name, usePost="yes", useMultipart="yes")
    )
    try:
        await multipart.put("form.bin", from_bytes(b"multipart body"))
        with pytest.raises(ProtocolFailure):
            await multipart.rename("form.bin", "other.bin")
    finally:
        await multipart.close()
    folder = http_server.root / name
    assert (folder / "put.bin").read_bytes() == b"body put.bin"
    assert (folder / "post.bin").read_bytes() == b"body post.bin"
    assert (folder / "form.bin").read_bytes() == b"multipart body"
    assert sorted(p.name for p in folder.iterdir()) == ["form.bin", "post.bin", "put.bin"]


async def test_bearer_token_and_headers(http_server: HttpServer) -> None:
    """The token option sends a bearer token and headers adds custom headers; without, 401/403."""
    name = _fresh_dir(http_server)
    await _put_disk(http_server, f"{name}/t.bin", b"tok")
    with_token = await connect(http_server.location("token", name, token=TOKEN))
    without = await connect(http_server.location("token", name))
    keyed = await connect(http_server.location("header", name, headers="X-Api-Key: k1;X-Other: 2"))
    unkeyed = await connect(http_server.location("header", name))
    try:
        assert await read_all(with_token.get("t.bin")) == b"tok"
        with pytest.raises(AuthenticationFailed):
            await without.size("t.bin")
        assert await keyed.size("t.bin") == 3
        with pytest.raises(PermissionDenied):
            await unkeyed.size("t.bin")
    finally:
        for conn in (with_token, without, keyed, unkeyed):
            await conn.close()


async def test_redirects_are_followed_up_to_the_limit(http_server: HttpServer) -> None:
    """A redirect is followed to the file; an endless chain fails permanently."""
    name = _fresh_dir(http_server)
    await _put_disk(http_server, f"{name}/r.bin", b"moved")
    conn = await connect(http_server.location("old", name))
    looping = await connect(http_server.location("loop", name, maxRedirects="3"))
    try:
        assert await read_all(conn.get("r.bin")) == b"moved"
        with pytest.raises(ProtocolFailure) as info:
            await read_all(looping.get("r.bin"))
        assert info.value.retriable is False
    finally:
        await conn.close()
        await looping.close()


@pytest.mark.parametrize(
    ("status", "error", "retriable"),
    [
        (401, AuthenticationFailed, False),
        (403, PermissionDenied, False),
        (404, NotFound, False),
        (408, ServerFailure, True),
        (429, ServerFailure, True),
        (503, ServerFailure, True),
    ],
)
async def test_status_codes_map_to_errors(
    http_server: HttpServer, status: int, error: type[Exception], retriable: bool
) -> None:
    """HTTP statuses become the project's errors with the right retriable flag."""
    conn = await connect(http_server.location("status", str(status)))
    try:
        with pytest.raises(error) as info:
            await read_all(conn.get("x"))
        assert getattr(info.value, "retriable", None) is retriable
    finally:
        await conn.close()


async def test_https_validates_certificates(tmp_path: Path, tls_files: TlsFiles) -> None:
    """HTTPS refuses an unknown CA by default, trusts it with cafile, or with sslValidation=no."""
    server = HttpServer(tmp_path / "root", str(tls_files.cert), str(tls_files.key))
    ca_file = tls_files.ca
    (server.root / "s").mkdir()
    (server.root / "s" / "f.bin").write_bytes(b"secure")
    await asyncio.to_thread(server.start)
    try:
        strict = await connect(server.location("public", "s"))
        trusted = await connect(server.location("public", "s", cafile=str(ca_file)))
        relaxed = await connect(server.location("public", "s", sslValidation="no"))
        try:
            with pytest.raises(AuthenticationFailed):
                await strict.size("f.bin")
            assert await read_all(trusted.get("f.bin")) == b"secure"
            assert await relaxed.size("f.bin") == 6
        finally:
            for conn in (strict, trusted, relaxed):
                await conn.close()
    finally:
        server.kill()


if __name__ == "__main__":
    tls = sys.argv[3:5]
    serve(Path(sys.argv[1]), int(sys.argv[2]), *(tls if len(tls) == 2 else (None, None)))
