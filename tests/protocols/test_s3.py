"""The ``s3`` module against a real moto server, plus its multipart and IAM behaviours.

moto runs as a subprocess (``moto_server``) on a free 127.0.0.1 port with IAM authentication
switched on after set-up (``/moto-api/reset-auth``), so a wrong secret fails the SigV4 check
and a user without rights gets AccessDenied. Clients reach it through ``KillableProxy`` so the
server-gone cases can cut every connection abruptly and come back with the same data (moto
keeps its state in memory: a real kill would lose the bucket and the IAM users). The relay, the
process and source helpers are ``tests.protocols.faultproxy``'s, shared with the az and gs suites.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
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
from tests.protocols.faultproxy import (
    KillableProxy,
    LocalServer,
    answering,
    broken,
    generated,
    put_many,
    relay,
    server_process,
    traced_peak,
)

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "ecpds-test"
_counter = itertools.count()


@dataclass(frozen=True)
class Moto(LocalServer):
    """A running moto server and the IAM keys made on it."""

    key: str
    secret: str
    reader_key: str
    reader_secret: str
    log: Path | None = None  # its request log (one line per request)

    @property
    def endpoint(self) -> str:
        return self.url

    def client(self, service: str = "s3") -> Any:  # boto3 clients are generated, untyped
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        )


def _policy(actions: list[str]) -> str:
    statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="session")
def moto(free_port: Callable[[], int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto_server with an all-rights user and a read-only user, IAM checks switched on."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    argv = [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    ready = answering(f"http://127.0.0.1:{port}/moto-api/")
    with server_process(argv, log, ready, missing="install the dev extras (moto[server])"):
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
            log=log,
        )
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="session")
async def s3_proxy(moto: Moto) -> AsyncIterator[KillableProxy]:
    async with relay(moto.port) as proxy:
        yield proxy


def _location(moto: Moto, proxy: KillableProxy | AnswerLosingRelay, **options: str) -> Location:
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
        await put_many(location, directory, count, in_flight=16)


async def test_multipart_upload_memory_is_bounded(moto: Moto, s3_proxy: KillableProxy) -> None:
    """A 7-part upload never holds more than (threads + queue) x partSize of part buffers."""
    location = _location(moto, s3_proxy, partSize="5", numUploadThreads="2", queueCapacity="1")
    bound = (2 + 1) * 5 * MIB
    total = 32 * MIB + 123  # 6 full parts of 5 MiB and a short seventh
    connection = await connect(location)
    try:
        written, peak = await traced_peak(connection.put("multi.bin", generated(total)))
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
    connection = await connect(location)
    try:
        with pytest.raises(SourceBrokeError):
            await connection.put("aborted.bin", broken(12 * MIB))
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


class AnswerLosingRelay:
    """A relay to moto that forwards every request but, ``lose`` times, drops the answer to
    a write of ``key`` (PUT or a multipart completion) and cuts the connection: the write
    landed, the client never hears so. It counts the writes of ``key`` that reached moto."""

    def __init__(self, target_port: int, key: str, lose: int) -> None:
        self.target_port = target_port
        self.key = key.encode()
        self.lose = lose
        self.writes = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> AnswerLosingRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def _is_write(self, head: bytes) -> bool:
        line = head.split(b"\r\n", 1)[0]
        method, _, rest = line.partition(b" ")
        target = rest.split(b" ", 1)[0]
        path, _, query = target.partition(b"?")
        if not path.endswith(b"/" + self.key):
            return False
        return (method == b"PUT" and b"partNumber" not in query) or (
            method == b"POST" and b"uploadId" in query
        )

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        drop = asyncio.Event()

        async def requests() -> None:
            # aiohttp sends one request at a time on a connection: the next answer is its own
            while chunk := await reader.read(256 * 1024):
                if chunk[:8].split(b" ", 1)[0] in {b"PUT", b"POST"} and self._is_write(chunk):
                    self.writes += 1
                    if self.lose > 0:
                        self.lose -= 1
                        drop.set()
                up_writer.write(chunk)
                await up_writer.drain()

        async def answers() -> None:
            while chunk := await up_reader.read(256 * 1024):
                # "100 Continue" (botocore's PUTs ask for it) is not the answer: the body
                # has not been sent yet
                if drop.is_set() and not chunk.startswith(b"HTTP/1.1 100 "):
                    writer.transport.abort()  # the answer is lost with the connection
                    return
                writer.write(chunk)
                await writer.drain()

        with contextlib.suppress(OSError, RuntimeError):
            await asyncio.gather(requests(), answers())
        for end in (writer, up_writer):
            end.transport.abort()


@pytest.mark.parametrize(
    ("usetmp", "part"), [("no", "1"), ("yes", "1"), ("no", "0")], ids=["put", "copy", "parts"]
)
async def test_a_write_whose_answer_is_lost_lands_once(moto: Moto, usetmp: str, part: str) -> None:
    """A write that landed but whose answer was lost is not sent again (the key is asked for
    the write's token first): the server sees one write of the final key, the file is whole."""
    data = payload(6 * MIB)
    size = "5" if part == "0" else "10"  # parts: a 6 MiB object in 5 MiB parts
    async with AnswerLosingRelay(moto.port, "once.bin", lose=1) as relay:
        location = replace(
            _location(moto, relay, usetmp=usetmp, partSize=size, retryCount="3"),
        )
        connection = await connect(location)
        try:
            await connection.put("once.bin", from_bytes(data))
        finally:
            await connection.close()
        assert relay.lose == 0, "the relay never lost an answer: the case was not exercised"
        assert relay.writes == 1, f"the final key was written {relay.writes} times"
    body = await asyncio.to_thread(
        lambda: (
            moto.client()
            .get_object(Bucket=BUCKET, Key=location.path.split("/", 2)[2] + "/once.bin")["Body"]
            .read()
        )
    )
    assert body == data
