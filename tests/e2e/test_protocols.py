"""Delivery to each protocol end to end (issue 5, "Tests"): FTP, FTPS, SFTP, HTTP PUT, S3,
Azure, GCS and a local folder, each with a compressing destination and a Host Directory
template, through the whole chain (``POST /api/v1/datafiles`` -> scheduler -> mover -> the
real server).

The servers are the protocol suites' own fixtures (pyftpdlib plain and explicit TLS, OpenSSH
sshd, the aiohttp WebDAV-ish server, moto, Azurite, gcp-storage-emulator), imported from
``tests.protocols`` and started only for the case that asks for them. What arrived is read
back with each server's own means (its directory on disk, boto3, the Azure SDK, the
emulator's JSON API), never through the transfer module under test.

Each case pins: every transfer ends DONE with its events in order (queued, scheduled,
started, succeeded, nothing else), the object sits at the path the template renders with the
codec's extension appended, it decompresses (with an independent decoder) to exactly the bytes
put, and nothing else is under the case's base (no temporary name left behind).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import cramjam
import httpx
import lz4.frame
import pytest
import zstandard
from azure.storage.blob.aio import BlobServiceClient

from bus.events.transfers import (
    TransferQueued,
    TransferScheduled,
    TransferStarted,
    TransferSucceeded,
    Verification,
)
from tests.e2e.conftest import Stack
from tests.protocols.conftest import TlsFiles, free_port, ram_dir, tls_files
from tests.protocols.ftpserver import FtpServer
from tests.protocols.test_azure import ACCOUNT, KEY, Azurite, azurite
from tests.protocols.test_ftp import explicit_server, plain_server
from tests.protocols.test_gcs import Emulator, gcs_emulator
from tests.protocols.test_http import PASSWORD as HTTP_PASSWORD
from tests.protocols.test_http import USER as HTTP_USER
from tests.protocols.test_http import HttpServer, http_server
from tests.protocols.test_s3 import BUCKET, Moto, moto
from tests.protocols.test_sftp import LOGIN, Sshd, sshd

# the servers' fixtures, imported so the cases below can ask for them by name
__all__ = [
    "azurite",
    "explicit_server",
    "free_port",
    "gcs_emulator",
    "http_server",
    "moto",
    "plain_server",
    "ram_dir",
    "sshd",
    "tls_files",
]

pytestmark = pytest.mark.kafka

CONTAINER = "e2e-protocols"
GCS_BUCKET = "e2e-protocols"

Files = dict[str, bytes]


@dataclass(frozen=True)
class Case:
    """One protocol's delivery: its codec, its Host Directory template and the path that
    template must give (``{dest}``, ``{host}``, ``{target}``, ``{parent}``, ``{name}``,
    ``{ymd}``, ``{y}``, ``{m}``, ``{d}``, ``{iso}`` filled in by the test, runs of ``/``
    collapsed as the renderer does), before the codec's extension ``suffix``."""

    protocol: str
    codec: str
    suffix: str
    template: str
    expected: str
    metadata: str | None = None
    # how the mover can check: size everywhere, MD5 too where the server keeps one
    verification: Verification = Verification.SIZE


CHECKED = Verification.SIZE_AND_CHECKSUM
# fmt: off
CASES = [
    Case("ftp", "gzip", ".gz", "$destination[name]/$date/", "{dest}/{ymd}/{target}"),
    Case("ftps", "bzip2", ".bz2", "out/$date[yyyy-MM-dd]/$dataTransfer[name]", "out/{iso}/{name}"),
    Case("sftp", "zstd", ".zst", "$date[yyyy]/$date[MM]/$date[dd]/", "{y}/{m}/{d}/{target}"),
    # a conditional line: the destination's name starts with "http-", so not the default
    Case("http", "lz4", ".lz4", "($destination[name].=http-) web/$date/\nelsewhere/",
         "web/{ymd}/{target}"),
    Case("s3", "lzma", ".lzma", "$metadata[stream]/$date/$dataTransfer[target]",
         "oper/{ymd}/{target}", metadata="stream=oper", verification=CHECKED),
    Case("az", "zip", ".zip", "by-parent/$dataTransfer[parent]/$date/",
         "by-parent/{parent}/{ymd}/{target}", verification=CHECKED),
    Case("gs", "snappy", ".sz", "$host[name]/$date[yyyyMMdd]/", "{host}/{ymd}/{target}"),
    Case("file", "lbzip2", ".bz2", "$destination[name]/$date/$dataTransfer[target]",
         "{dest}/{ymd}/{target}"),
]
# fmt: on


# -- the remote sides ------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """Where one case delivers: its YAML host fields and how to read back what is there."""

    protocol: str
    address: str
    read: Callable[[], Awaitable[Files]]  # every object under the case's base, by relative path
    login: str | None = None
    password: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def yaml(self, ident: str, directory: str) -> str:
        lines = [
            f"  - id: {ident}",
            f"    nickname: {self.protocol} {ident}",
            "    type: dissemination",
            f"    protocol: {self.protocol}",
            f"    address: {self.address}",
            f'    directory: "{directory}"',
            "    retry_count: 1",
            "    retry_frequency: 1s",
        ]
        if self.login is not None:
            lines.append(f"    login: {self.login}")
        if self.password is not None:
            lines.append(f"    password: {self.password}")
        if self.options:
            lines.append("    options:")
            lines += [f'      {k}: "{v}"' for k, v in self.options.items()]
        return "\n".join(lines) + "\n"


def on_disk(folder: Path) -> Callable[[], Awaitable[Files]]:
    """Every file under ``folder`` (hidden ones too: a leftover must show)."""

    async def read() -> Files:
        if not folder.exists():
            return {}
        return {
            str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }

    return read


async def ftp_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    server: FtpServer = request.getfixturevalue("plain_server")
    return Remote(
        "ftp", f"127.0.0.1:{server.port}/{base}", on_disk(server.root / base),
        login=server.user, password=server.password,
    )  # fmt: skip


async def ftps_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    server: FtpServer = request.getfixturevalue("explicit_server")
    tls: TlsFiles = request.getfixturevalue("tls_files")
    return Remote(
        "ftps", f"127.0.0.1:{server.port}/{base}", on_disk(server.root / base),
        login=server.user, password=server.password,
        options={"ftps.connectionType": "explicit", "ftps.cafile": str(tls.ca)},
    )  # fmt: skip


async def sftp_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    server: Sshd = request.getfixturevalue("sshd")
    folder = server.data / base
    return Remote(
        "sftp", f"127.0.0.1:{server.port}{folder}", on_disk(folder), login=LOGIN,
        options={
            "sftp.privateKeyFile": str(server.client_key),
            "sftp.fingerPrint": server.fingerprint(),
        },
    )  # fmt: skip


async def http_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    server: HttpServer = request.getfixturevalue("http_server")
    (server.root / base).mkdir()
    # webdav: MKCOL for the template's directories, PUT to a temporary name then MOVE
    return Remote(
        "http", f"127.0.0.1:{server.port}/files/{base}", on_disk(server.root / base),
        login=HTTP_USER, password=HTTP_PASSWORD, options={"http.webdav": "yes"},
    )  # fmt: skip


async def s3_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    server: Moto = request.getfixturevalue("moto")

    async def read() -> Files:
        client = server.client()
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{base}/")
        keys = [item["Key"] for item in listed.get("Contents", [])]
        return {
            key.removeprefix(f"{base}/"): client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            for key in keys
        }

    # usetmp: a temporary key then a server-side copy, so the leftover check means something
    return Remote(
        "s3", f"127.0.0.1:{server.port}/{BUCKET}/{base}", read,
        login=server.key, password=server.secret,
        options={"s3.scheme": "http", "s3.usetmp": "yes"},
    )  # fmt: skip


async def az_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    server: Azurite = request.getfixturevalue("azurite")

    async def read() -> Files:
        credential = {"account_name": ACCOUNT, "account_key": KEY}
        async with BlobServiceClient(server.account_url, credential=credential) as service:
            container = service.get_container_client(CONTAINER)
            found: Files = {}
            async for blob in container.list_blobs(name_starts_with=f"{base}/"):
                downloaded = await container.download_blob(blob.name)
                found[blob.name.removeprefix(f"{base}/")] = await downloaded.readall()
            return found

    # useMD5: the blob keeps Content-MD5, so the mover verifies size and checksum
    return Remote(
        "az", f"127.0.0.1:{server.port}/{CONTAINER}/{base}", read,
        login=ACCOUNT, password=KEY,
        options={"azure.scheme": "http", "azure.mkContainer": "yes", "azure.useMD5": "yes"},
    )  # fmt: skip


async def gs_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    server: Emulator = request.getfixturevalue("gcs_emulator")

    async def read() -> Files:
        api = f"{server.root}/storage/v1/b/{GCS_BUCKET}/o"
        async with httpx.AsyncClient(timeout=30) as client:
            listed = (await client.get(api, params={"prefix": f"{base}/"})).raise_for_status()
            found: Files = {}
            for item in listed.json().get("items", []):
                name = item["name"]
                got = await client.get(f"{api}/{quote(name, safe='')}", params={"alt": "media"})
                found[name.removeprefix(f"{base}/")] = got.raise_for_status().content
            return found

    return Remote(
        "gs", f"127.0.0.1:{server.port}/{GCS_BUCKET}/{base}", read,
        options={"gcs.emulator": "yes", "gcs.mkBucket": "yes"},
    )  # fmt: skip


async def file_remote(request: pytest.FixtureRequest, base: str) -> Remote:
    stack: Stack = request.getfixturevalue("stack")
    folder = stack.root / "file-protocol" / base
    return Remote("file", f"localhost{folder}", on_disk(folder))


REMOTES: dict[str, Callable[[pytest.FixtureRequest, str], Awaitable[Remote]]] = {
    "ftp": ftp_remote,
    "ftps": ftps_remote,
    "sftp": sftp_remote,
    "http": http_remote,
    "s3": s3_remote,
    "az": az_remote,
    "gs": gs_remote,
    "file": file_remote,
}


# -- checks ----------------------------------------------------------------------------------


def decoded(codec: str, data: bytes) -> bytes:
    """``data`` decompressed by a decoder independent of ``store.codecs`` (every frame)."""
    if codec == "gzip":
        return gzip.decompress(data)
    if codec in {"bzip2", "lbzip2"}:
        return bz2.decompress(data)
    if codec == "lzma":
        return lzma.decompress(data)
    if codec == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            (entry,) = archive.namelist()
            return archive.read(entry)
    if codec == "lz4":
        out, rest = [], data
        while rest:
            frame = lz4.frame.LZ4FrameDecompressor()
            out.append(frame.decompress(rest))
            rest = frame.unused_data
        return b"".join(out)
    if codec == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        return bytes(reader.read())
    if codec == "snappy":
        return bytes(cramjam.snappy.decompress(data))
    raise AssertionError(f"no decoder for {codec}")


def expected_paths(case: Case, dest: str, host: str, target: str) -> set[str]:
    """The relative paths the template may give today (or just before midnight UTC)."""
    now = datetime.now(UTC)
    parent, _, name = target.rpartition("/")
    return {
        re.sub("/+", "/", case.expected.format(
            dest=dest, host=host, target=target, name=name, parent=parent,
            ymd=f"{day:%Y%m%d}", y=f"{day:%Y}", m=f"{day:%m}", d=f"{day:%d}", iso=f"{day:%Y-%m-%d}",
        )) + case.suffix
        for day in (now, now - timedelta(minutes=5))
    }  # fmt: skip


def story(stack: Stack, transfer_id: str) -> list[tuple[str, int | None]]:
    """The events about one transfer on the transfers topic, in log order: type and attempt."""
    assert stack.tail is not None
    return [
        (type(e).__name__, getattr(e, "attempt", None))
        for e in stack.tail.events
        if getattr(e, "transfer_id", None) == transfer_id
    ]


def payloads(protocol: str) -> dict[str, bytes]:
    """A compressible product in a sub-directory and a small incompressible one."""
    return {
        f"fc/an-{protocol}.grib": b"GRIB" + os.urandom(2048) + b"7777" * 12_000,
        "obs.bin": os.urandom(3000),
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as c:
        yield c


@pytest.mark.parametrize("case", CASES, ids=[c.protocol for c in CASES])
async def test_delivery_with_compression_and_directory_template(
    case: Case, stack: Stack, client: httpx.AsyncClient, request: pytest.FixtureRequest
) -> None:
    """Files put for a compressing destination on this protocol end DONE (queued, scheduled,
    started, succeeded, in order), each at the path its Host Directory template renders with
    the codec's extension, decompressing to exactly the bytes put, with nothing else left
    under the host's base."""
    tag = f"{case.protocol}-{stack.tag}"
    dest, host = f"{case.protocol}-{stack.tag}", f"h-{tag}"
    base = f"e2e-{tag}-{uuid.uuid4().hex[:6]}"
    remote = await REMOTES[case.protocol](request, base)
    directory = case.template.replace("\n", "\\n")  # one YAML double-quoted line
    await stack.apply(
        f"hosts:\n{remote.yaml(host, directory)}"
        f"destinations:\n  - name: {dest}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n    compression: {case.codec}\n"
        f"associations:\n  - {{destination: {dest}, host: {host}, priority: 0}}\n"
    )
    sent = payloads(case.protocol)
    ids = {
        await stack.put(client, dest, target, data, metadata=case.metadata): target
        for target, data in sent.items()
    }
    assert stack.tail is not None
    await stack.tail.all_done(dest, len(ids), timeout=60)

    for tid in ids:
        events = story(stack, tid)
        # one attempt, on the first try: ordered, taken by the mover, DONE; nothing else
        assert [name for name, _ in events] == [
            TransferQueued.__name__,
            TransferScheduled.__name__,
            TransferStarted.__name__,
            TransferSucceeded.__name__,
        ], (tid, events)
        assert len({attempt for _, attempt in events[1:]}) == 1, (tid, events)
    succeeded = {e.transfer_id: e for e in stack.tail.of(TransferSucceeded, dest)}
    arrived = await remote.read()
    wanted = set()
    for tid, target in ids.items():
        found = expected_paths(case, dest, host, target) & set(arrived)
        assert len(found) == 1, (target, sorted(arrived))
        (path,) = found
        assert path.endswith(case.suffix)
        assert succeeded[tid].remote_path.endswith(path), succeeded[tid].remote_path
        assert succeeded[tid].compression.value == case.codec.upper()
        assert succeeded[tid].bytes_sent == len(arrived[path])
        assert succeeded[tid].verification == case.verification
        assert decoded(case.codec, arrived[path]) == sent[target], path
        if target.startswith("fc/"):
            assert len(arrived[path]) < len(sent[target]), "the product was not compressed"
        wanted.add(path)
    leftovers = sorted(set(arrived) - wanted)
    assert not leftovers, f"temporary or stray files: {leftovers}"
