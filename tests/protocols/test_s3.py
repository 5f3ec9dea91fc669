"""The ``s3`` module against a real moto server, plus its multipart and IAM behaviours.

moto runs as a subprocess (``moto_server``) on a free 127.0.0.1 port with IAM authentication
switched on after set-up (``/moto-api/reset-auth``), so a wrong secret fails the SigV4 check
and a user without rights gets AccessDenied. Clients reach it through ``KillableProxy`` so the
server-gone cases can cut every connection abruptly and come back with the same data (moto
keeps its state in memory: a real kill would lose the bucket and the IAM users).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from protocols.base import (
    Location,
    NotFound,
    PermissionDenied,
    from_bytes,
    read_all,
)
from protocols.registry import connect
from tests.protocols.contract import MIB, SourceBrokeError, TransferContract, payload

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "ecpds-test"
_counter = itertools.count()


class KillableProxy:
    """A TCP relay to a server whose ``kill`` drops every connection and stops listening.

    From the client's side this is what a SIGKILLed server looks like (connections reset,
    new ones refused); ``restart`` listens again on the same port, and the server behind it
    still has its data.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(256 * 1024):
                    sink.write(chunk)
                    await sink.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                if sink.can_write_eof() and not sink.is_closing():
                    try:
                        sink.write_eof()
                    except OSError:
                        sink.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def kill(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # RST, like a dead process's sockets
        self._writers.clear()
        # Let the relays see their sockets die and end before anyone closes the loop.
        if self._relays:
            await asyncio.wait(list(self._relays), timeout=2)

    async def restart(self) -> None:
        if self._server is None:
            await self.start()


@dataclass(frozen=True)
class Moto:
    """A running moto server and the IAM keys made on it."""

    port: int
    key: str
    secret: str
    reader_key: str
    reader_secret: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str = "s3") -> Any:  # boto3 clients are generated, untyped
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        )


def _wait_http(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode} before serving")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - our own local server
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    pytest.fail(f"moto_server did not answer on {url} within {seconds}s")


def _policy(actions: list[str]) -> str:
    statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="session")
def moto(free_port: Callable[[], int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto_server with an all-rights user and a read-only user, IAM checks switched on."""
    command = ROOT / ".venv" / "bin" / "moto_server"
    if not command.exists():
        pytest.fail(f"{command} is missing: install the dev extras (moto[server])")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(command), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/moto-api/", process)
        iam = boto3.client(
            "iam",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        keys = {}
        for user, actions in (("ecpds", ["s3:*"]), ("reader", ["s3:Get*", "s3:List*"])):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=_policy(actions))
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
        # From here on every request must carry a valid signature of a known user.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
        server = Moto(
            port=port,
            key=keys["ecpds"]["AccessKeyId"],
            secret=keys["ecpds"]["SecretAccessKey"],
            reader_key=keys["reader"]["AccessKeyId"],
            reader_secret=keys["reader"]["SecretAccessKey"],
        )
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
async def s3_proxy(moto: Moto) -> AsyncIterator[KillableProxy]:
    proxy = KillableProxy(moto.port)
    await proxy.start()
    yield proxy
    await proxy.kill()


def _location(moto: Moto, proxy: KillableProxy, **options: str) -> Location:
    return Location(
        scheme="s3",
        host="127.0.0.1",
        port=proxy.port,
        user=moto.key,
        password=moto.secret,
        path=f"/{BUCKET}/t{next(_counter)}",
        options={"scheme": "http", "retryCount": "2", "connectTimeOut": "5", **options},
    )


class TestS3Contract(TransferContract):
    """The s3 module keeps the whole transfer contract on moto."""

    # moto answers only ~70-90 PUTs/s here (one Python process, 2 cores shared with the
    # client), so 10,000 keys would take two minutes; 1,000 listed 300 per page still cross
    # three continuation tokens, which is what the big listing must exercise on S3.
    many_entries = 1_000
    kill_file_size = 64 * MIB

    @pytest.fixture
    def location(self, moto: Moto, s3_proxy: KillableProxy) -> Location:
        return _location(moto, s3_proxy, dirMarker="yes", listPageSize="300")

    @pytest.fixture
    def bad_location(self, location: Location) -> Location:
        return replace(location, password="not-the-secret")

    @pytest.fixture
    def kill_server(self, s3_proxy: KillableProxy) -> KillableProxy:
        return s3_proxy

    async def populate(self, location: Location, directory: str, count: int) -> None:
        """Put the entries with 16 requests in flight on one connection (moto is the limit)."""
        connection = await connect(location)
        try:
            limit = asyncio.Semaphore(16)

            async def one(index: int) -> None:
                async with limit:
                    await connection.put(f"{directory}/f{index:05d}", from_bytes(b"x"))

            await asyncio.gather(*(one(i) for i in range(count)))
        finally:
            await connection.close()


async def generated(total: int, chunk: int = MIB) -> AsyncIterator[bytes]:
    """``total`` bytes made on the fly, so the source itself holds one chunk at a time."""
    block = payload(chunk)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


async def test_multipart_upload_memory_is_bounded(moto: Moto, s3_proxy: KillableProxy) -> None:
    """A 7-part upload never holds more than (threads + queue) x partSize of part buffers."""
    location = _location(moto, s3_proxy, partSize="5", numUploadThreads="2", queueCapacity="1")
    bound = (2 + 1) * 5 * MIB
    total = 32 * MIB + 123  # 6 full parts of 5 MiB and a short seventh
    connection = await connect(location)
    try:
        tracemalloc.start()
        try:
            written = await connection.put("multi.bin", generated(total))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert written == total
        assert await connection.size("multi.bin") == total
    finally:
        await connection.close()
    # One part's worth of slack for SDK/request copies in flight beside our buffers.
    assert peak < bound + 5 * MIB, f"peak {peak / MIB:.1f} MiB over the {bound / MIB} MiB bound"
    head = await asyncio.to_thread(
        moto.client().head_object,
        Bucket=BUCKET,
        Key=location.path.split("/", 2)[2] + "/multi.bin",
    )
    assert head["ETag"].strip('"').endswith("-7"), "expected a 7-part multipart object"


async def test_small_object_goes_in_one_put(moto: Moto, s3_proxy: KillableProxy) -> None:
    """An object below multipartSize is stored by a single PUT (plain ETag, no part count)."""
    location = _location(moto, s3_proxy, partSize="5")
    connection = await connect(location)
    try:
        await connection.put("small.bin", from_bytes(payload(MIB)))
    finally:
        await connection.close()
    head = await asyncio.to_thread(
        moto.client().head_object,
        Bucket=BUCKET,
        Key=location.path.split("/", 2)[2] + "/small.bin",
    )
    assert "-" not in head["ETag"]


async def test_failed_multipart_upload_is_aborted(moto: Moto, s3_proxy: KillableProxy) -> None:
    """A multipart put whose source fails after two parts is aborted: no object, no upload."""
    location = _location(moto, s3_proxy, partSize="5")
    prefix = location.path.split("/", 2)[2]

    async def breaks_after_12_mib() -> AsyncIterator[bytes]:
        async for piece in generated(12 * MIB):
            yield piece
        raise SourceBrokeError("producer died")

    connection = await connect(location)
    try:
        with pytest.raises(SourceBrokeError):
            await connection.put("aborted.bin", breaks_after_12_mib())
        assert await connection.list(".") == []
    finally:
        await connection.close()
    uploads = await asyncio.to_thread(
        moto.client().list_multipart_uploads,
        Bucket=BUCKET,
        Prefix=prefix,
    )
    assert uploads.get("Uploads", []) == []


async def test_user_without_rights_is_permission_denied(
    moto: Moto, s3_proxy: KillableProxy
) -> None:
    """A valid user lacking s3:PutObject gets PermissionDenied, which is not retriable."""
    location = replace(_location(moto, s3_proxy), user=moto.reader_key, password=moto.reader_secret)
    connection = await connect(location)
    try:
        assert await connection.list(".") == []  # reading is allowed
        with pytest.raises(PermissionDenied) as info:
            await connection.put("denied.bin", from_bytes(b"no"))
        assert info.value.retriable is False
    finally:
        await connection.close()


async def test_missing_bucket_is_not_found(moto: Moto, s3_proxy: KillableProxy) -> None:
    """Listing in a bucket that does not exist raises NotFound."""
    location = replace(_location(moto, s3_proxy), path="/no-such-bucket/x")
    connection = await connect(location)
    try:
        with pytest.raises(NotFound):
            await connection.list(".")
    finally:
        await connection.close()


async def test_mkbucket_and_bucket_name_option(moto: Moto, s3_proxy: KillableProxy) -> None:
    """mkBucket creates the bucket named by bucketName; the whole path is then the key prefix."""
    bucket = f"made-{os.getpid()}-{next(_counter)}"
    location = replace(
        _location(moto, s3_proxy, mkBucket="yes", bucketName=bucket), path="/in/here"
    )
    connection = await connect(location)
    try:
        await connection.put("f.bin", from_bytes(b"abc"))
        assert await read_all(connection.get("/in/here/f.bin")) == b"abc"
    finally:
        await connection.close()
    listed = await asyncio.to_thread(
        moto.client().list_objects_v2,
        Bucket=bucket,
    )
    assert [o["Key"] for o in listed["Contents"]] == ["in/here/f.bin"]


async def test_mkdir_without_markers_is_a_no_op(moto: Moto, s3_proxy: KillableProxy) -> None:
    """By default mkdir writes nothing: prefixes exist once an object is under them."""
    connection = await connect(_location(moto, s3_proxy))
    try:
        await connection.mkdir("empty/dir")
        assert await connection.list(".") == []
    finally:
        await connection.close()


async def test_use_tmp_renames_by_server_side_copy(moto: Moto, s3_proxy: KillableProxy) -> None:
    """With usetmp the object lands under its final name only, the temporary key removed."""
    location = _location(moto, s3_proxy, usetmp="yes", partSize="5")
    data = payload(6 * MIB)  # multipart, so the copy is of a multipart object
    connection = await connect(location)
    try:
        assert await connection.put("tmp.bin", from_bytes(data)) == len(data)
        assert [e.name for e in await connection.list(".")] == ["tmp.bin"]
        assert await read_all(connection.get("tmp.bin")) == data
    finally:
        await connection.close()
