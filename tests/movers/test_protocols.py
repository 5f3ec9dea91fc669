"""A mover delivers orders to every protocol against real servers, through real Kafka.

One mover runs in the test loop for the module; each test publishes an order straight to the
orders topic (object stored first in a LocalStore), waits for its outcome and reads the file
back through the transfer module: the bytes, decompressed, equal the stored ones, the path is
the rendered Host Directory template with the codec extension, and the outcome says how the
delivery was verified.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bus.config.secrets import decrypt, encrypt
from bus.events.base import Compression
from bus.events.config import Host, IfTargetExists
from bus.events.transfers import (
    Fault,
    TransferFailed,
    TransferStarted,
    TransferSucceeded,
    Verification,
)
from consumers.movers import core
from consumers.movers.runner import Mover
from protocols.base import read_all
from protocols.location import location_for
from protocols.registry import connect
from store.compression import decompress
from store.local import LocalStore
from store.objects import ObjectId
from tests.movers.support import (
    Outcomes,
    Stored,
    Topics,
    host,
    order,
    publish_orders,
    running_mover,
    stored,
)
from tests.protocols.conftest import TlsFiles
from tests.protocols.ftpserver import FtpServer
from tests.protocols.ftpserver import free_port as ftp_port
from tests.protocols.test_azure import ACCOUNT, KEY, Azurite
from tests.protocols.test_gcs import Emulator
from tests.protocols.test_http import PASSWORD as HTTP_PASSWORD
from tests.protocols.test_http import USER as HTTP_USER
from tests.protocols.test_http import HttpServer
from tests.protocols.test_s3 import BUCKET, Moto
from tests.protocols.test_sftp import LOGIN, Sshd

pytestmark = pytest.mark.kafka


def template(base: str = "") -> str:
    """A Host Directory with a conditional line that never matches and a default line."""
    prefix = f"{base.rstrip('/')}/" if base else ""
    return f"($destination[name]==nowhere) /never/\n{prefix}$destination[name]/$metadata[stream]/"


@pytest.fixture(scope="module")
def ftp_server(ram_dir: Callable[[str], Path]) -> Iterator[FtpServer]:
    server = FtpServer(root=ram_dir("mover-ftp"), port=ftp_port(), password="ftp-pass")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ftps_server(ram_dir: Callable[[str], Path], tls_files: TlsFiles) -> Iterator[FtpServer]:
    server = FtpServer(
        root=ram_dir("mover-ftps"),
        port=ftp_port(),
        password="ftp-pass",
        tls="explicit",
        certfile=tls_files.chain,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def mover(
    kafka: str, topics: Topics, key_file: Path, store: LocalStore
) -> AsyncIterator[Mover]:
    async with running_mover(topics.config(kafka, key_file), store.root) as running:
        yield running


async def deliver_and_read(
    kafka: str,
    topics: Topics,
    outcomes: Outcomes,
    store: LocalStore,
    key_file: Path,
    target: Host,
    compression: Compression,
) -> tuple[TransferSucceeded, Stored, bytes]:
    obj = await stored(store)
    sent = order(obj, target, compression=compression)
    await publish_orders(kafka, topics.orders, sent)
    outcome = await outcomes.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
    assert isinstance(outcome, TransferSucceeded), outcome
    assert outcomes.of(sent.transfer_id, TransferStarted), "TransferStarted not published"
    password = None if target.credentials is None else decrypt(target.credentials, key_file)
    location = location_for(target, password)
    conn = await connect(location)
    try:
        raw = await read_all(conn.get(outcome.remote_path))
    finally:
        await conn.close()
    plain = raw
    if compression != Compression.NONE:
        plain = b"".join([c async for c in decompress(compression.value.lower(), _once(raw))])
    return outcome, obj, plain


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def expected_path(base: str, compression: Compression) -> str:
    return posixpath.join(base, "site-a", "oper", "data", "product.grib") + core.extension(
        compression
    )


@pytest.mark.usefixtures("mover")
async def test_file_delivery_with_gzip(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A file host gets the gzipped bytes at the rendered path with .gz, verified by size."""
    target = host("file", "", directory=template(str(tmp_path)))
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.GZIP
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path(str(tmp_path), Compression.GZIP)
    assert outcome.verification == Verification.SIZE
    assert outcome.bytes_sent == Path(outcome.remote_path).stat().st_size
    assert [p.name for p in Path(outcome.remote_path).parent.iterdir()] == ["product.grib.gz"]


@pytest.mark.usefixtures("mover")
async def test_ftp_delivery_with_zstd(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    ftp_server: FtpServer,
) -> None:  # fmt: skip
    """An FTP host with an encrypted password gets zstd bytes under the template's path."""
    target = host(
        "ftp", f"127.0.0.1:{ftp_server.port}", login=ftp_server.user,
        credentials=encrypt(ftp_server.password, key_file), directory=template("/"),
        options={"ftp.passive": "yes"},
    )  # fmt: skip
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.ZSTD
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path("/", Compression.ZSTD)
    assert outcome.verification == Verification.SIZE
    assert (ftp_server.root / outcome.remote_path.lstrip("/")).stat().st_size == outcome.bytes_sent


@pytest.mark.usefixtures("mover")
async def test_ftps_delivery_with_lz4(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    ftps_server: FtpServer, tls_files: TlsFiles,
) -> None:  # fmt: skip
    """An explicit-TLS FTP host (CA from the host options) gets the lz4 bytes."""
    target = host(
        "ftps", f"127.0.0.1:{ftps_server.port}", login=ftps_server.user,
        credentials=encrypt(ftps_server.password, key_file), directory=template("/"),
        options={"ftp.connectionType": "explicit", "ftp.cafile": str(tls_files.ca)},
    )  # fmt: skip
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.LZ4
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path("/", Compression.LZ4)


@pytest.mark.usefixtures("mover")
async def test_sftp_delivery_with_bzip2(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    sshd: Sshd,
) -> None:  # fmt: skip
    """An OpenSSH host (key auth, pinned fingerprint) gets the bzip2 bytes at the path."""
    target = host(
        "sftp", f"127.0.0.1:{sshd.port}", login=LOGIN, directory=template(str(sshd.data)),
        options={
            "sftp.privateKeyFile": str(sshd.client_key),
            "sftp.fingerPrint": sshd.fingerprint(),
        },
    )  # fmt: skip
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.BZIP2
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path(str(sshd.data), Compression.BZIP2)
    assert Path(outcome.remote_path).stat().st_size == outcome.bytes_sent


@pytest.mark.usefixtures("mover")
async def test_http_webdav_delivery_with_lzma(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    http_server: HttpServer,
) -> None:  # fmt: skip
    """A WebDAV host (PUT to a temporary name, then MOVE) gets the lzma bytes."""
    target = host(
        "http", f"127.0.0.1:{http_server.port}/files", login=HTTP_USER,
        credentials=encrypt(HTTP_PASSWORD, key_file), directory=template(),
        options={"http.webdav": "yes"},
    )  # fmt: skip
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.LZMA
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path("/files", Compression.LZMA)


@pytest.mark.usefixtures("mover")
async def test_s3_delivery_with_snappy_is_checked_by_etag(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    moto: Moto,
) -> None:  # fmt: skip
    """An S3 host gets the snappy bytes and the single-part ETag confirms the MD5 sent."""
    target = host(
        "s3", f"127.0.0.1:{moto.port}/{BUCKET}", login=moto.key,
        credentials=encrypt(moto.secret, key_file), directory=template(),
        options={"s3.scheme": "http", "s3.usetmp": "no"},
    )  # fmt: skip
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.SNAPPY
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path(f"/{BUCKET}", Compression.SNAPPY)
    assert outcome.verification == Verification.SIZE_AND_CHECKSUM
    assert outcome.md5 is not None
    assert len(outcome.md5) == 32


@pytest.mark.usefixtures("mover")
async def test_azure_delivery_with_zip_is_checked_by_content_md5(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    azurite: Azurite,
) -> None:  # fmt: skip
    """An Azure host with useMD5 gets the zipped bytes, verified by size and Content-MD5."""
    target = host(
        "az", f"127.0.0.1:{azurite.port}/mover-test", login=ACCOUNT,
        credentials=encrypt(KEY, key_file), directory=template(),
        options={"azure.scheme": "http", "azure.mkContainer": "yes", "azure.useMD5": "yes"},
    )  # fmt: skip
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.ZIP
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path("/mover-test", Compression.ZIP)
    assert outcome.verification == Verification.SIZE_AND_CHECKSUM


@pytest.mark.usefixtures("mover")
async def test_gcs_delivery_uncompressed(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    gcs_emulator: Emulator,
) -> None:  # fmt: skip
    """A GCS host gets the bytes unchanged under the template's path (no extension)."""
    target = host(
        "gs", f"127.0.0.1:{gcs_emulator.port}/mover-test", directory=template(),
        options={"gcs.emulator": "yes", "gcs.mkBucket": "yes"},
    )  # fmt: skip
    outcome, obj, plain = await deliver_and_read(
        kafka, topics, outcomes, store, key_file, target, Compression.NONE
    )
    assert plain == obj.data
    assert outcome.remote_path == expected_path("/mover-test", Compression.NONE)
    assert outcome.bytes_sent == len(obj.data)


@pytest.mark.usefixtures("mover")
async def test_wrong_password_fails_permanently(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
    ftp_server: FtpServer,
) -> None:  # fmt: skip
    """A refused login ends as TransferFailed, not retriable, naming the error and the host,
    and classed as the host's problem (so the scheduler fails over, never stops the file)."""
    target = host(
        "ftp", f"127.0.0.1:{ftp_server.port}", login=ftp_server.user,
        credentials=encrypt("not-the-password", key_file), directory="/x/",
    )  # fmt: skip
    sent = order(await stored(store, size=1000), target, attempt=3)
    await publish_orders(kafka, topics.orders, sent)
    outcome = await outcomes.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
    assert isinstance(outcome, TransferFailed)
    assert (outcome.retriable, outcome.error_class) == (False, "AuthenticationFailed")
    assert outcome.fault is Fault.HOST
    assert (outcome.host_id, outcome.attempt) == (target.id, 3)


@pytest.mark.usefixtures("mover")
async def test_object_missing_at_the_store_is_the_files_own_failure(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, tmp_path: Path
) -> None:
    """An order whose object is gone from the store fails as the file's own problem (FILE),
    the one failure the scheduler ends a transfer for; nothing reaches the host."""
    obj = await stored(store, size=1000)
    await store.delete(ObjectId(obj.guid))
    sent = order(obj, host("file", "", directory=f"{tmp_path}/out/"), target="gone.bin")
    await publish_orders(kafka, topics.orders, sent)
    outcome = await outcomes.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
    assert isinstance(outcome, TransferFailed)
    assert (outcome.error_class, outcome.fault) == ("ObjectNotFound", Fault.FILE)
    assert not (tmp_path / "out" / "gone.bin").exists()


@pytest.mark.usefixtures("mover")
async def test_server_gone_fails_retriably(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, key_file: Path,
) -> None:  # fmt: skip
    """A host where nothing listens ends as a retriable TransferFailed, the host's problem."""
    target = host(
        "ftp", f"127.0.0.1:{ftp_port()}", login="u", credentials=encrypt("p", key_file),
        options={"ftp.connectTimeOut": "2s"},
    )  # fmt: skip
    sent = order(await stored(store, size=1000), target)
    await publish_orders(kafka, topics.orders, sent)
    outcome = await outcomes.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
    assert isinstance(outcome, TransferFailed)
    assert outcome.retriable is True
    assert outcome.fault is Fault.HOST


@pytest.mark.usefixtures("mover")
async def test_resume_sends_only_the_missing_tail(
    kafka: str, topics: Topics, outcomes: Outcomes, store: LocalStore, tmp_path: Path
) -> None:
    """With if-target-exists RESUME, a partial file at the final name is completed from its
    size: only the tail is sent and the whole file ends up right."""
    obj = await stored(store, data=bytes(range(256)) * 800)  # 204,800 bytes
    final = tmp_path / "data" / "product.grib"
    final.parent.mkdir(parents=True)
    final.write_bytes(obj.data[:150_000])
    sent = order(
        obj, host("file", "", directory=f"{tmp_path}/"), if_target_exists=IfTargetExists.RESUME
    )
    await publish_orders(kafka, topics.orders, sent)
    outcome = await outcomes.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
    assert isinstance(outcome, TransferSucceeded), outcome
    assert outcome.bytes_sent == len(obj.data) - 150_000
    assert final.read_bytes() == obj.data
