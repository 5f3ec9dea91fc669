"""Acquisition from real SFTP (asyncssh), FTP (pyftpdlib) and HTTP index-page servers, all
polled at once by one runner with encrypted credentials, and from an S3 prefix (moto): each
new file is discovered, stored with the listed size and queued to the destination."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from bus.config import hostkeys
from bus.events import Event, envelope
from bus.events import config_changes as ev
from bus.events.acquisition import FileDiscovered, ListingCompleted, RetrievalSucceeded
from bus.events.config import Association, HostKey
from bus.events.transfers import TransferQueued
from tests.acquisition.conftest import Env
from tests.acquisition.test_runner import GROUP, destination, host, kinds, write
from tests.conftest import free_port as _free_port
from tests.protocols.ftpserver import FtpServer
from tests.protocols.test_http import HttpServer
from tests.protocols.test_s3 import BUCKET, Moto
from tests.protocols.test_s3 import moto as moto  # the session fixture
from tests.protocols.test_sftp import PASSWORD as SFTP_PASSWORD
from tests.protocols.test_sftp import USER as SFTP_USER
from tests.protocols.test_sftp import AsyncsshServer


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """What the moto fixture asks for: a free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture(scope="module")
async def sftp(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncsshServer]:
    server = AsyncsshServer(tmp_path_factory.mktemp("acq-sftp") / "root")
    await server.start()
    yield server
    await server.kill()


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    server = FtpServer(tmp_path_factory.mktemp("acq-ftp"), _free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path_factory.mktemp("acq-http") / "root")
    server.start()
    yield server
    server.kill()


async def test_sftp_ftp_and_http_index_providers(
    env: Env, sftp: AsyncsshServer, ftp: FtpServer, http: HttpServer
) -> None:
    """Files on SFTP, FTP and an HTTP index page are acquired, with the listed sizes."""
    write(sftp.root / "sdir" / "s1.bin", b"s" * 3000)
    write(sftp.root / "sdir" / "s2.txt", b"no")
    write(ftp.root / "fdir" / "f1.bin", b"f" * 4000)
    write(http.root / "hdir" / "h1.bin", b"h" * 5000)
    write(http.root / "hdir" / "h2.txt", b"no")
    fingerprint = sftp.host_key.get_fingerprint("sha256")
    await env.define(
        GROUP,
        destination("acq-proto"),
        host(
            "sftp-p", "sftp", f"127.0.0.1:{sftp.port}", "/sdir/{.*\\.bin}", login=SFTP_USER,
            credentials=env.key.encrypt(SFTP_PASSWORD), options={"sftp.fingerPrint": fingerprint},
        ),
        host(
            "ftp-p", "ftp", f"127.0.0.1:{ftp.port}", "/fdir/{.*\\.bin}", login=ftp.user,
            credentials=env.key.encrypt(ftp.password),
        ),
        host("http-p", "http", f"127.0.0.1:{http.port}", "/public/hdir/{.*\\.bin}"),
        *(Association(destination="acq-proto", host=h) for h in ("sftp-p", "ftp-p", "http-p")),
    )  # fmt: skip
    hosts = {"sftp-p", "ftp-p", "http-p"}
    async with env.runner():
        await env.until(
            env.names.acquisition,
            lambda es: {e.host_id for e in kinds(es, RetrievalSucceeded)} >= hosts,
        )
    events = await env.events(env.names.acquisition)
    found = {e.name: e for e in kinds(events, FileDiscovered) if e.host_id in hosts}
    assert set(found) == {"s1.bin", "f1.bin", "h1.bin"}
    sizes = {e.path: e.size for e in kinds(events, RetrievalSucceeded) if e.host_id in hosts}
    assert sorted(sizes.values()) == [3000, 4000, 5000]
    queued = {
        e.target: e.size
        for e in kinds(await env.events(env.names.topics.transfers), TransferQueued)
        if e.destination == "acq-proto"
    }
    assert queued == {"s1.bin": 3000, "f1.bin": 4000, "h1.bin": 5000}


async def test_s3_prefix_provider(env: Env, moto: Moto) -> None:
    """Objects under an S3 prefix are listed, filtered by name and acquired with their size."""
    client = moto.client()
    client.put_object(Bucket=BUCKET, Key="acqin/a.nc", Body=b"n" * 7000)
    client.put_object(Bucket=BUCKET, Key="acqin/b.txt", Body=b"no")
    await env.define(
        GROUP,
        destination("acq-s3"),
        host(
            "s3-p", "s3", f"127.0.0.1:{moto.port}", f"/{BUCKET}/acqin/{{.*\\.nc}}",
            login=moto.key, credentials=env.key.encrypt(moto.secret),
            options={"s3.scheme": "http"},
        ),
        Association(destination="acq-s3", host="s3-p"),
    )  # fmt: skip
    async with env.runner():
        await env.until(
            env.names.acquisition,
            lambda es: any(isinstance(e, RetrievalSucceeded) and e.host_id == "s3-p" for e in es),
        )
    events = await env.acquisition("s3-p")
    assert [e.name for e in kinds(events, FileDiscovered)] == ["a.nc"]
    assert [e.size for e in kinds(events, RetrievalSucceeded)] == [7000]


async def test_sftp_host_keys_learnt_refused_when_changed_and_trusted(
    env: Env, sftp: AsyncsshServer
) -> None:
    """A provider met first: its key is recorded (HostKeyLearned) and files are acquired. A
    provider whose pinned key is not the one it offers (its key changed): every poll fails as
    HostKeyChanged, the refusal is recorded once, nothing is acquired; once the offered key
    is trusted (what ``ecpds host trust-key`` publishes) the next poll acquires the file."""
    write(sftp.root / "kdir" / "k1.bin", b"k" * 1500)
    write(sftp.root / "kdir2" / "k2.bin", b"k" * 1600)
    fingerprint = sftp.host_key.get_fingerprint("sha256")
    address = f"127.0.0.1:{sftp.port}"
    login = {"login": SFTP_USER, "credentials": env.key.encrypt(SFTP_PASSWORD)}
    await env.define(
        GROUP,
        destination("acq-keys"),
        host("sftp-new", "sftp", address, "/kdir/{.*\\.bin}", **login),
        host("sftp-changed", "sftp", address, "/kdir2/{.*\\.bin}", **login),
        *(Association(destination="acq-keys", host=h) for h in ("sftp-new", "sftp-changed")),
    )
    stale = HostKey(
        host_id="sftp-changed", address=address, key_type="ssh-ed25519", fingerprint="SHA256:old"
    )
    pinned = ev.HostKeyTrusted(envelope=envelope("test", stale.host_id), key=stale)
    await env.live.reached(
        [await env.publisher.publish(env.names.config, hostkeys.event_key(stale), pinned)]
    )

    def failed_on_key(es: list[Event]) -> bool:
        return any(
            isinstance(e, ListingCompleted)
            and e.host_id == "sftp-changed"
            and any("HostKeyChanged" in error for error in e.errors)
            for e in es
        )

    def acquired(host_id: str) -> Callable[[list[Event]], bool]:
        return lambda es: any(
            isinstance(e, RetrievalSucceeded) and e.host_id == host_id for e in es
        )

    async with env.runner():
        await env.until(env.names.acquisition, acquired("sftp-new"))
        await env.until(env.names.acquisition, failed_on_key)
        config = await env.events(env.names.config)
        (learnt,) = [e for e in config if isinstance(e, ev.HostKeyLearned)]
        assert (learnt.key.host_id, learnt.key.fingerprint) == ("sftp-new", fingerprint)
        assert not acquired("sftp-changed")(await env.events(env.names.acquisition))
        await env.until(
            env.names.config, lambda es: any(isinstance(e, ev.HostKeyRefused) for e in es)
        )
        trust = hostkeys.trusted(env.live.view, "sftp-changed", None, "test", "ops")
        assert trust.key.fingerprint == fingerprint
        await env.publisher.publish(env.names.config, hostkeys.event_key(trust.key), trust)
        await env.until(env.names.acquisition, acquired("sftp-changed"))
    refused = [e for e in await env.events(env.names.config) if isinstance(e, ev.HostKeyRefused)]
    assert [(r.key.fingerprint, r.expected) for r in refused] == [(fingerprint, "SHA256:old")]
