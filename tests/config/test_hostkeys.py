"""SSH host keys learnt and pinned through the configuration: the pure rules, then the whole
round against OpenSSH's sshd and the real Kafka (learnt on the first connection, accepted
silently after, a changed key refused until ``ecpds host trust-key`` accepts it)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bus.config import key_of
from bus.config.hostkeys import HostKeyBook, Untrustable, pin_options, trusted
from bus.config.view import ConfigView, LiveConfig, config_spec
from bus.events import Event, envelope
from bus.events import config_changes as ev
from bus.events.config import Host, HostKey
from bus.publisher import Publisher
from bus.topics import apply_topics
from cli.config import host_app
from protocols import sftp
from protocols.base import Location
from protocols.registry import connect
from tests.config import factories as f
from tests.conftest import eventually
from tests.protocols.test_sftp import LOGIN, SSHD, Sshd


def sftp_host(**kw: object) -> Host:
    return f.host("sftp-1", protocol="sftp", address="127.0.0.1:2222/data", **kw)


def test_pin_options_name_the_host_and_its_learnt_key() -> None:
    """An SFTP host gets its id, and its pinned key once one is learnt for its address; a key
    learnt at another address is not its pin; FTP hosts get nothing."""
    host = sftp_host()
    view = ConfigView().apply(ev.HostDefined(envelope=envelope("t", "h"), host=host))
    assert pin_options(view, host) == {"hostKeyFor": "sftp-1"}
    key = HostKey(host_id="sftp-1", address="127.0.0.1:2222", key_type="t", fingerprint="SHA256:a")
    view = view.apply(ev.HostKeyLearned(envelope=envelope("t", "h"), key=key))
    assert pin_options(view, host) == {"hostKeyFor": "sftp-1", "hostKeyPinned": "SHA256:a"}
    moved = dataclasses.replace(host, address="10.0.0.9:22")
    assert pin_options(view, moved) == {"hostKeyFor": "sftp-1"}
    assert pin_options(view, f.host()) == {}


@pytest.mark.parametrize("option", ["sftp.fingerPrint", "sftp.knownHosts"])
def test_the_operators_pin_overrides_learning(option: str) -> None:
    """With ``fingerPrint`` or ``knownHosts`` set, nothing is learnt nor pinned by the stage."""
    host = sftp_host(options={option: "SHA256:x"})
    assert pin_options(ConfigView(), host) == {}


def test_trust_without_a_fingerprint_needs_a_refused_key() -> None:
    """``trust-key`` without ``--fingerprint`` trusts the key last refused, and is refused
    when there is none (or for an unknown host, or a fingerprint that is not SHA256)."""
    host = sftp_host()
    view = ConfigView().apply(ev.HostDefined(envelope=envelope("t", "h"), host=host))
    with pytest.raises(Untrustable, match="no refused key"):
        trusted(view, "sftp-1", None, "t", "ops")
    with pytest.raises(Untrustable, match="no host"):
        trusted(view, "nope", "SHA256:a", "t", "ops")
    with pytest.raises(Untrustable, match="not a SHA256"):
        trusted(view, "sftp-1", "MD5:aa", "t", "ops")
    offered = HostKey(
        host_id="sftp-1", address="127.0.0.1:2222", key_type="ssh-rsa", fingerprint="SHA256:b"
    )
    view = view.evolve(
        [
            ev.HostKeyLearned(envelope=envelope("t", "h"), key=dataclasses.replace(offered)),
            ev.HostKeyTrusted(
                envelope=envelope("t", "h"),
                key=dataclasses.replace(offered, fingerprint="SHA256:a"),
            ),
            ev.HostKeyRefused(envelope=envelope("t", "h"), key=offered, expected="SHA256:a"),
        ]
    )
    event = trusted(view, "sftp-1", None, "t", "ops")
    assert (event.key, event.actor) == (offered, "ops")


async def test_the_book_records_each_sighting_once() -> None:
    """A key seen by many connections is proposed once; a refusal once per pinned key (again
    after an operator trusted a key that is still not the one offered)."""
    host = sftp_host()
    view = ConfigView().apply(ev.HostDefined(envelope=envelope("t", "h"), host=host))
    sent: list[Event] = []

    async def record(key: str, event: Event) -> None:
        sent.append(event)

    book = HostKeyBook(lambda: view, record, "test/stage")
    book.seen(host.id, "ssh-ed25519", "SHA256:a")
    book.seen(host.id, "ssh-ed25519", "SHA256:a")
    await book.drain()
    assert [type(e).__name__ for e in sent] == ["HostKeyLearned"]
    view = view.evolve(sent)
    book.seen(host.id, "ssh-ed25519", "SHA256:a")  # pinned now: nothing to record
    book.refused(host.id, "ssh-ed25519", "SHA256:b", "SHA256:a")
    book.refused(host.id, "ssh-ed25519", "SHA256:b", "SHA256:a")
    await book.drain()
    assert [type(e).__name__ for e in sent] == ["HostKeyLearned", "HostKeyRefused"]
    wrong = trusted(view, host.id, "SHA256:c", "t", "ops")
    view = view.evolve([sent[-1], wrong])
    book.refused(host.id, "ssh-ed25519", "SHA256:b", "SHA256:c")
    await book.drain()
    assert [(type(e).__name__, getattr(e, "expected", "")) for e in sent[1:]] == [
        ("HostKeyRefused", "SHA256:a"),
        ("HostKeyRefused", "SHA256:c"),
    ]


# -- the whole round: sshd, Kafka, the book a stage runs, the CLI ----------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Sshd]:
    if not Path(SSHD).exists():
        pytest.skip("openssh-server not installed")
    found = Sshd(tmp_path / "sshd")
    found.prepare()
    found.start()
    yield found
    found.kill()


@pytest.fixture
async def topic(kafka: str, unique: str) -> str:
    name = f"test.{unique}.config"
    await apply_topics(kafka, [config_spec(name)])
    return name


@pytest.fixture
async def live(kafka: str, topic: str) -> AsyncIterator[LiveConfig]:
    async with LiveConfig(kafka, topic) as config:
        yield config


def location(server: Sshd, host: Host, book: HostKeyBook) -> Location:
    """Where a stage connects for ``host``: the server, with the book's pin options."""
    return Location(
        scheme="sftp",
        host="127.0.0.1",
        port=server.port,
        user=LOGIN,
        path=str(server.data),
        options={"privateKeyFile": str(server.client_key), **book.options(host)},
    )


def change_host_key(server: Sshd) -> None:
    """The server restarts with a new host key (reinstalled, or someone in the middle)."""
    server.kill()
    for path in (server.host_key, Path(f"{server.host_key}.pub")):
        path.unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(server.host_key)], check=True
    )
    server.start()


async def test_a_key_is_learnt_pinned_refused_when_changed_and_accepted_once_trusted(
    kafka: str, topic: str, live: LiveConfig, server: Sshd, caplog: pytest.LogCaptureFixture
) -> None:
    """First connection: HostKeyLearned on the configuration topic and the view pins it;
    second connection: accepted, nothing recorded, no warning; the server's key changes:
    HostKeyChanged and HostKeyRefused (the view shows the refused key); ``ecpds host
    trust-key`` publishes HostKeyTrusted and the next connection is accepted."""
    host = dataclasses.replace(sftp_host(), address=f"127.0.0.1:{server.port}")
    async with Publisher(kafka) as publisher:
        defined = ev.HostDefined(envelope=envelope("test", host.id), host=host)
        await live.reached([await publisher.publish(topic, key_of(host), defined)])
        published: list[Event] = []

        async def record(key: str, event: Event) -> None:
            published.append(event)
            await live.reached([await publisher.publish(topic, key, event)])

        book = HostKeyBook(lambda: live.view, record, "test/stage")
        unwatch = sftp.watch_host_keys(book)
        try:
            with caplog.at_level("WARNING", logger="protocols.sftp"):
                await (await connect(location(server, host, book))).close()
                await book.drain()
                (learnt,) = published
                assert isinstance(learnt, ev.HostKeyLearned)
                assert learnt.key.fingerprint == server.fingerprint()
                assert live.view.host_keys[host.id] == learnt.key

                await (await connect(location(server, host, book))).close()
                await book.drain()
                assert len(published) == 1  # accepted silently
            assert caplog.text == ""

            early = await asyncio.to_thread(
                CliRunner().invoke, host_app, ["--topic", topic, "trust-key", host.id]
            )
            assert early.exit_code == 2, early.output  # nothing refused yet: nothing to trust
            assert "no refused key" in early.output

            old = server.fingerprint()
            change_host_key(server)
            with pytest.raises(sftp.HostKeyChanged):
                await connect(location(server, host, book))
            await book.drain()
            refused = published[-1]
            assert isinstance(refused, ev.HostKeyRefused)
            assert (refused.key.fingerprint, refused.expected) == (server.fingerprint(), old)
            assert live.view.refused_keys[host.id].fingerprint == server.fingerprint()
            with pytest.raises(sftp.HostKeyChanged):  # still refused, recorded once
                await connect(location(server, host, book))
            await book.drain()
            assert len(published) == 2

            result = await asyncio.to_thread(
                CliRunner().invoke, host_app, ["--topic", topic, "trust-key", host.id]
            )
            assert result.exit_code == 0, result.output
            assert f"trusted host key {server.fingerprint()}" in result.output
            fingerprint = server.fingerprint()

            async def pinned_new() -> bool:
                return live.view.host_keys[host.id].fingerprint == fingerprint

            await eventually(pinned_new)
            assert host.id not in live.view.refused_keys
            await (await connect(location(server, host, book))).close()
            await book.drain()
            assert len(published) == 2
        finally:
            unwatch()


async def test_the_operators_fingerprint_wins_and_nothing_is_learnt(server: Sshd) -> None:
    """With ``sftp.fingerPrint`` set on the host, the stage adds no pin options: the option
    decides and no key is recorded."""
    host = dataclasses.replace(
        sftp_host(options={"sftp.fingerPrint": server.fingerprint()}),
        address=f"127.0.0.1:{server.port}",
    )
    published: list[Event] = []

    async def record(key: str, event: Event) -> None:
        published.append(event)

    book = HostKeyBook(lambda: ConfigView(), record, "test/stage")
    unwatch = sftp.watch_host_keys(book)
    try:
        where = location(server, host, book)
        assert "hostKeyFor" not in where.options
        where = dataclasses.replace(
            where, options={**where.options, "fingerPrint": server.fingerprint()}
        )
        await (await connect(where)).close()
        await book.drain()
    finally:
        unwatch()
    assert published == []
