"""The portal's FTP door against stock clients: Python's ``ftplib`` (``FTP`` and ``FTP_TLS``),
``lftp`` (``ftp://`` with TLS forced, ``ftps://``) and ``curl`` (``--ssl-reqd``, ``ftps://``,
``-C -``), with real Kafka, PostgreSQL, projector and object store."""

from __future__ import annotations

import asyncio
import ftplib
import io
import os
import re
import ssl
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from bus.events.datafiles import DataFileRegistered, DataFileRegistrationFailed, DataFileStored
from bus.events.portal import (
    AccessDeniedReason,
    PortalAccessDenied,
    PortalDownloaded,
    PortalUploaded,
    SignInFailed,
)
from bus.events.transfers import TransferDownloaded, TransferQueued
from tests.portal.conftest import PortalStack, Site

pytestmark = pytest.mark.kafka

USERS = """
users:
  - login: alice-{tag}
    password: alice-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, put, size, mtime, rename, delete, mkdir, rmdir]
  - login: reader-{tag}
    password: reader-secret
    operations: [dir]
policies:
  - id: readers-{tag}
    destinations: [pickup-{tag}]
    users: [reader-{tag}]
"""


@pytest.fixture(scope="module")
async def sites(portal: PortalStack) -> dict[str, Site]:
    """Two data users: alice (every operation) and reader (``dir`` only, through a policy)."""
    made = {
        "alice": portal.site(f"alice-{portal.tag}", "alice-secret"),
        "reader": portal.site(f"reader-{portal.tag}", "reader-secret"),
    }
    await portal.apply(USERS.format(tag=portal.tag))
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    return made


def _cert(portal: PortalStack) -> Path:
    return portal.root / "secrets" / "portal" / "tls" / "server.crt"


def _denials(portal: PortalStack, login: str) -> list[PortalAccessDenied]:
    return [e for e in portal.events(PortalAccessDenied) if e.user == login]


def _ftp(portal: PortalStack, site: Site, *, tls: bool = False) -> ftplib.FTP:
    """ftplib signed in as ``site``: plain, or ``FTP_TLS`` (AUTH TLS, PROT P) trusting the
    portal's certificate."""
    if tls:
        context = ssl.create_default_context(cafile=str(_cert(portal)))
        client: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=30)  # noqa: S321 - the door under test
    else:
        client = ftplib.FTP(timeout=30)  # noqa: S321 - plain FTP is a door under test
    client.connect("127.0.0.1", portal.ftp_port)
    client.login(site.login, site.password)
    if isinstance(client, ftplib.FTP_TLS):
        client.prot_p()
    return client


def _lftp(
    portal: PortalStack, site: Site, url: str, commands: Sequence[str], *, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Stock ``lftp`` running ``commands`` on ``url`` (``ftp://`` with TLS forced, or
    ``ftps://``) as ``site``, trusting the portal's certificate; it stops at the first command
    that fails, and exits non-zero then."""
    script = cwd / f"lftp-{uuid.uuid4().hex[:8]}"
    script.write_text(
        "set cmd:fail-exit yes\nset net:max-retries 1\nset net:timeout 20\n"
        f"set ssl:ca-file {_cert(portal)}\nset ftp:ssl-force yes\n"
        f"open -u {site.login},{site.password} {url}\n" + "\n".join(commands) + "\n"
    )
    return subprocess.run(
        ["lftp", "-f", str(script)],
        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def _curl(
    portal: PortalStack, site: Site, url: str, *args: str
) -> subprocess.CompletedProcess[bytes]:
    """``curl`` on ``url`` as ``site``, trusting the portal's certificate."""
    argv = [
        "curl", "-sS", "--cacert", str(_cert(portal)), "-u", f"{site.login}:{site.password}",
        *args, url,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, timeout=120, check=False)


async def _put(portal: PortalStack, site: Site, name: str, data: bytes) -> None:
    """``name`` uploaded into the pickup destination with ftplib, and projected."""
    dest = f"pickup-{portal.tag}"

    def put() -> None:
        with _ftp(portal, site) as client:
            client.storbinary(f"STOR /{dest}/{name}", io.BytesIO(data))

    await asyncio.to_thread(put)
    await portal.listed(dest, name)


async def _status(portal: PortalStack, transfer: str, wanted: str) -> list[tuple[str]]:
    rows: list[tuple[str]] = []
    for _ in range(100):
        rows = [
            tuple(r)
            for r in await portal.rows(  # type: ignore[misc]
                "SELECT status FROM transfers WHERE transfer_id = %s", transfer
            )
        ]
        if rows and rows[0][0] == wanted:
            break
        await asyncio.sleep(0.2)
    return rows


def _transfer(portal: PortalStack, name: str) -> str:
    dest = f"pickup-{portal.tag}"
    return next(
        e.transfer_id
        for e in portal.events(TransferQueued)
        if e.destination == dest and e.target == name
    )


async def test_ftplib_puts_lists_and_its_complete_get_marks_the_transfer_done(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """Plain FTP with ftplib: STOR registers the file (a ``PortalUploaded`` over ``ftp``),
    MLSD, LIST and NLST list it with its size, SIZE, MDTM and MLST answer, RETR returns the same
    bytes as a complete ``PortalDownloaded`` and the held transfer becomes DONE."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(3 * 1024 * 1024 + 17)
    await _put(portal, alice, "data.bin", data)
    uploaded = next(e for e in portal.events(PortalUploaded) if e.path == "data.bin")
    assert (uploaded.size, uploaded.protocol, uploaded.destination) == (len(data), "ftp", dest)

    def read() -> tuple[dict[str, dict[str, str]], list[str], list[str], dict[str, str], bytes]:
        with _ftp(portal, alice) as client:
            client.cwd(f"/{dest}")
            facts = dict(client.mlsd())
            lines: list[str] = []
            client.retrlines("LIST", lines.append)
            names = client.nlst()
            answers = {
                verb: client.sendcmd(f"{verb} data.bin") for verb in ("SIZE", "MDTM", "MLST")
            }
            got = io.BytesIO()
            client.retrbinary("RETR data.bin", got.write)
            return facts, lines, names, answers, got.getvalue()

    facts, lines, names, answers, got = await asyncio.to_thread(read)
    assert facts["data.bin"]["type"] == "file"
    assert facts["data.bin"]["size"] == str(len(data))
    assert any(line.endswith(" data.bin") and f" {len(data)} " in line for line in lines)
    assert "data.bin" in names
    assert answers["SIZE"] == f"213 {len(data)}"
    assert re.fullmatch(r"213 \d{14}", answers["MDTM"])
    stamp = answers["MDTM"][4:]
    assert f" type=file;size={len(data)};modify={stamp}; /{dest}/data.bin" in answers["MLST"]
    assert got == data
    transfer = _transfer(portal, "data.bin")
    await portal.until(
        lambda: any(e.transfer_id == transfer for e in portal.events(TransferDownloaded))
    )
    download = next(e for e in portal.events(PortalDownloaded) if e.transfer_id == transfer)
    assert (download.complete, download.bytes_sent, download.protocol) == (True, len(data), "ftp")
    assert await _status(portal, transfer, "DONE") == [("DONE",)]


async def test_ftplib_over_explicit_tls_puts_and_gets(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """``FTP_TLS`` (AUTH TLS, PBSZ 0, PROT P: the data channel encrypted too) puts a file
    and gets the same bytes back."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(1_000_003)

    def put() -> None:
        with _ftp(portal, alice, tls=True) as client:
            client.storbinary(f"STOR /{dest}/tls.bin", io.BytesIO(data))

    def get() -> bytes:
        got = io.BytesIO()
        with _ftp(portal, alice, tls=True) as client:
            client.retrbinary(f"RETR /{dest}/tls.bin", got.write)
        return got.getvalue()

    await asyncio.to_thread(put)
    await portal.listed(dest, "tls.bin")
    assert await asyncio.to_thread(get) == data


@pytest.mark.parametrize("scheme", ["ftp", "ftps"])
async def test_lftp_puts_lists_and_gets_over_tls(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path, scheme: str
) -> None:
    """lftp with TLS forced on ``ftp://`` (AUTH TLS) and on ``ftps://`` (implicit), its data
    channel protected and resuming the control channel's TLS session (its defaults): ``put``
    registers the file, ``cls -l`` (MLSD) lists its size, ``get`` returns the same bytes."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    port = portal.ftp_port if scheme == "ftp" else portal.ftps_port
    url = f"{scheme}://127.0.0.1:{port}"
    name = f"by-lftp-{scheme}.bin"
    data = os.urandom(700_001)
    (tmp_path / "up.bin").write_bytes(data)
    pushed = await asyncio.to_thread(
        _lftp, portal, alice, url, [f"put up.bin -o /{dest}/{name}"], cwd=tmp_path
    )
    assert pushed.returncode == 0, pushed.stderr + portal.log("portal")
    await portal.listed(dest, name)
    pulled = await asyncio.to_thread(
        _lftp,
        portal,
        alice,
        url,
        [f"cls -l /{dest}/", f"get /{dest}/{name} -o back.bin"],
        cwd=tmp_path,
    )
    assert pulled.returncode == 0, pulled.stderr + portal.log("portal")
    line = next(n for n in pulled.stdout.splitlines() if n.endswith(name))
    assert "700001" in line.split()
    assert (tmp_path / "back.bin").read_bytes() == data


async def test_curl_puts_and_gets_over_explicit_and_implicit_tls_in_the_passive_range(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """curl ``--ssl-reqd`` on ``ftp://`` uploads (``-T``) and downloads; on ``ftps://`` it
    downloads the same bytes, and with TLS 1.2 its data connection resumes the control
    connection's TLS session; every data connection it opens is on a port of the configured
    passive range, which PASV announces too."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(500_000)
    (tmp_path / "c.bin").write_bytes(data)
    explicit = f"ftp://127.0.0.1:{portal.ftp_port}/{dest}/by-curl.bin"
    put = await asyncio.to_thread(
        _curl, portal, alice, explicit, "--ssl-reqd", "-T", str(tmp_path / "c.bin")
    )
    assert put.returncode == 0, put.stderr.decode() + portal.log("portal")
    await portal.listed(dest, "by-curl.bin")
    implicit = f"ftps://127.0.0.1:{portal.ftps_port}/{dest}/by-curl.bin"
    ports: list[int] = []
    tls12 = ["--tls-max", "1.2"]
    for url, extra in ((explicit, ["--ssl-reqd"]), (implicit, []), (implicit, tls12)):
        got = await asyncio.to_thread(_curl, portal, alice, url, "-v", *extra)
        assert got.returncode == 0, got.stderr.decode() + portal.log("portal")
        assert got.stdout == data
        found = re.findall(r"Connecting to [^ ]+ \([^)]+\) port (\d+)", got.stderr.decode())
        ports += [int(p) for p in found]
        if extra == tls12:  # the data connection resumed the control one's session:
            told = got.stderr.decode()  # an abbreviated handshake, no certificate sent again
            assert "SSL re-using session ID" in told
            assert told.count("TLS handshake, Certificate (11)") == 1
    low, high = portal.passive
    assert ports
    assert all(low <= p <= high for p in ports), (ports, portal.passive)

    def pasv() -> tuple[str, int]:
        with _ftp(portal, alice) as client:
            return ftplib.parse227(client.sendcmd("PASV"))  # noqa: S321 - reads an answer

    host, port = await asyncio.to_thread(pasv)
    assert host == "127.0.0.1"  # no advertised address set: the one the client reached
    assert low <= port <= high


async def test_a_resumed_download_completes_the_file_but_marks_nothing_done(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``curl -C -`` resumes from the bytes it already has (REST): the file ends whole, served
    from that offset; not read from its first byte, the download is not complete and the held
    transfer stays held."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(400_000)
    await _put(portal, alice, "resumed.bin", data)
    local = tmp_path / "local.bin"
    local.write_bytes(data[:150_000])
    url = f"ftp://127.0.0.1:{portal.ftp_port}/{dest}/resumed.bin"
    got = await asyncio.to_thread(
        _curl, portal, alice, url, "--ssl-reqd", "-C", "-", "-o", str(local)
    )
    assert got.returncode == 0, got.stderr.decode() + portal.log("portal")
    assert local.read_bytes() == data
    transfer = _transfer(portal, "resumed.bin")
    await portal.until(
        lambda: any(e.transfer_id == transfer for e in portal.events(PortalDownloaded))
    )
    download = next(e for e in portal.events(PortalDownloaded) if e.transfer_id == transfer)
    assert (download.complete, download.bytes_sent) == (False, len(data) - 150_000)
    await asyncio.sleep(1.0)
    assert not any(e.transfer_id == transfer for e in portal.events(TransferDownloaded))
    assert await _status(portal, transfer, "HOLD") == [("HOLD",)]


async def test_a_temporary_name_is_registered_only_once_renamed(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """STOR to ``up.tmp`` registers nothing (LIST shows it, as an upload in progress);
    RNFR/RNTO to ``up.bin`` registers ``up.bin`` with the same bytes."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(100_000)

    def put() -> list[str]:
        with _ftp(portal, alice) as client:
            client.storbinary(f"STOR /{dest}/up.tmp", io.BytesIO(data))
            return client.nlst(f"/{dest}")

    assert "up.tmp" in await asyncio.to_thread(put)
    await asyncio.sleep(1.0)
    targets = {e.target for e in portal.events(DataFileRegistered) if e.destination == dest}
    assert not targets & {"up.tmp", "up.bin"}

    def rename() -> str:
        with _ftp(portal, alice) as client:
            return client.rename(f"/{dest}/up.tmp", f"/{dest}/up.bin")

    assert (await asyncio.to_thread(rename)).startswith("250")
    await portal.until(
        lambda: any(
            e.destination == dest and e.target == "up.bin" for e in portal.events(TransferQueued)
        )
    )
    stored = {e.data_file_id: e for e in portal.events(DataFileStored)}
    registered = next(e for e in portal.events(DataFileRegistered) if e.target == "up.bin")
    assert stored[registered.data_file_id].size == len(data)
    assert "up.tmp" not in {e.target for e in portal.events(DataFileRegistered)}


async def test_each_operation_is_allowed_with_its_grant(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """With every grant: MKD, CWD into it, CDUP, RMD; DELE of an upload in progress; a
    registered file is never deleted (550)."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"

    def run() -> list[str]:
        with _ftp(portal, alice) as client:
            answers = [client.mkd(f"/{dest}/made"), client.cwd(f"/{dest}/made")]
            answers += [client.pwd(), client.sendcmd("CDUP"), client.pwd()]
            answers.append(client.rmd(f"/{dest}/made"))
            client.storbinary(f"STOR /{dest}/gone.tmp", io.BytesIO(b"t" * 10))
            answers.append(client.delete(f"/{dest}/gone.tmp"))
            answers.append(" ".join(client.nlst(f"/{dest}")))
            with pytest.raises(ftplib.error_perm) as refused:
                client.delete(f"/{dest}/data.bin")
            answers.append(str(refused.value))
            return answers

    made, cwd, inside, up, back, removed, deleted, names, registered = await asyncio.to_thread(run)
    assert made == f"/{dest}/made"
    assert cwd.startswith("250")
    assert (inside, back) == (f"/{dest}/made", f"/{dest}")
    assert up.startswith("250")
    assert removed.startswith("250")
    assert deleted.startswith("250")
    assert "gone.tmp" not in names.split()
    assert "made" not in names.split()
    assert registered.startswith("550")


@pytest.mark.parametrize(
    ("command", "operation"),
    [
        ("RETR data.bin", "get"),
        ("STOR x.bin", "put"),
        ("DELE x.tmp", "delete"),
        ("MKD no", "mkdir"),
        ("RMD no", "rmdir"),
        ("RNFR a.tmp", "rename"),
        ("SIZE data.bin", "size"),
        ("MDTM data.bin", "mtime"),
    ],
)
async def test_an_operation_not_granted_answers_550_with_its_denial(
    portal: PortalStack, sites: dict[str, Site], command: str, operation: str
) -> None:
    """reader (``dir`` only) may list the destination; each other operation answers 550 and
    is a NO_PERMISSION denial naming it and its path."""
    reader, dest = sites["reader"], f"pickup-{portal.tag}"
    name = command.split()[1]

    def run() -> tuple[list[str], str]:
        with _ftp(portal, reader) as client:
            client.cwd(f"/{dest}")
            listed = client.nlst()
            verb = command.split()[0]
            if verb in ("RETR", "STOR"):
                client.sendcmd("PASV")
            try:
                answer = client.sendcmd(command)
            except ftplib.error_perm as refused:
                answer = str(refused)
            return listed, answer

    listed, answer = await asyncio.to_thread(run)
    assert "data.bin" in listed
    assert answer.startswith("550"), answer
    await portal.until(
        lambda: any(
            (e.operation, e.path, e.reason)
            == (operation, f"/{dest}/{name}", AccessDeniedReason.NO_PERMISSION)
            for e in _denials(portal, reader.login)
        )
    )


@pytest.mark.parametrize(
    "command",
    [
        "RETR ../../../../etc/passwd",
        "RETR /etc/passwd",
        "RETR /pickup-{tag}/../other-{tag}/x",
        "RETR /pickup-{tag}/%2e%2e/%2e%2e/etc/passwd",
        "RETR /pickup-{tag}/%252e%252e/etc/passwd",
        "LIST /other-{tag}",
        "CWD ../..",
        "SIZE /other-{tag}/x",
    ],
)
async def test_traversal_attempts_reach_nothing_outside_the_view(
    portal: PortalStack, sites: dict[str, Site], command: str
) -> None:
    """``..`` (plain, percent-encoded, double-encoded), absolute paths and a destination the
    user does not reach all answer 550 with nothing sent, each a NOT_FOUND denial."""
    alice = sites["alice"]
    before = len(_denials(portal, alice.login))

    def run() -> str:
        with _ftp(portal, alice) as client:
            client.sendcmd("PASV")
            try:
                return client.sendcmd(command.format(tag=portal.tag))
            except ftplib.error_perm as refused:
                return str(refused)

    answer = await asyncio.to_thread(run)
    assert answer.startswith("550"), answer
    await portal.until(lambda: len(_denials(portal, alice.login)) > before)
    new = _denials(portal, alice.login)[before:]
    assert all(e.reason is AccessDeniedReason.NOT_FOUND for e in new)


async def test_a_wrong_password_answers_530_and_is_a_failed_sign_in(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """PASS with a wrong password answers 530 and publishes a ``SignInFailed`` of the ftp
    door; nothing is served before a sign-in (530)."""
    alice = sites["alice"]

    def run() -> tuple[str, str]:
        with ftplib.FTP(timeout=30) as client:  # noqa: S321 - plain FTP is a door under test
            client.connect("127.0.0.1", portal.ftp_port)
            try:
                client.sendcmd("PWD")
            except ftplib.error_perm as early:
                before = str(early)
            try:
                client.login(alice.login, "not-the-password")
            except ftplib.error_perm as refused:
                return before, str(refused)
        return before, "signed in"

    before, answer = await asyncio.to_thread(run)
    assert before.startswith("530")
    assert answer.startswith("530")
    await portal.until(
        lambda: any(e.door == "ftp" and e.login == alice.login for e in portal.events(SignInFailed))
    )


async def test_a_user_past_max_connections_is_turned_away_with_421(
    portal: PortalStack,
) -> None:
    """``portal.maxConnections: 0``: PASS answers 421, the connection is closed and a
    MAX_CONNECTIONS denial is published."""
    full = portal.site(f"full-{portal.tag}", "full-secret")
    await portal.apply(
        f"""
users:
  - login: full-{portal.tag}
    password: full-secret
    destinations: [pickup-{portal.tag}]
    operations: [dir]
    properties:
      portal.maxConnections: "0"
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic

    def run() -> str:
        with ftplib.FTP(timeout=30) as client:  # noqa: S321 - plain FTP is a door under test
            client.connect("127.0.0.1", portal.ftp_port)
            try:
                client.login(full.login, full.password)
            except ftplib.error_temp as refused:
                return str(refused)
        return "signed in"

    assert (await asyncio.to_thread(run)).startswith("421")
    await portal.until(
        lambda: any(
            e.reason is AccessDeniedReason.MAX_CONNECTIONS and e.protocol == "ftp"
            for e in _denials(portal, full.login)
        )
    )


async def test_an_upload_resumed_with_rest_is_refused_with_a_reason(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """REST then STOR answers 550 saying uploads are not resumed (they stream into the store
    in order); nothing is registered under that name."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"

    def run() -> str:
        with _ftp(portal, alice) as client:
            client.sendcmd("TYPE I")
            client.sendcmd("PASV")
            client.sendcmd("REST 10")
            try:
                return client.sendcmd(f"STOR /{dest}/rest.bin")
            except ftplib.error_perm as refused:
                return str(refused)

    answer = await asyncio.to_thread(run)
    assert answer.startswith("550")
    assert "not supported" in answer
    assert not any(e.target == "rest.bin" for e in portal.events(DataFileRegistered))


async def test_an_upload_cut_midway_registers_nothing_and_leaves_no_object(
    portal: PortalStack, sites: dict[str, Site], tmp_path: Path
) -> None:
    """``curl -T`` killed midway (its data and control connections closed at once, as if the
    file had ended): the registration is closed as failed, nothing is queued, no object is
    left in the store."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(1024**3)  # far more than arrives before the kill
    url = f"ftp://127.0.0.1:{portal.ftp_port}/{dest}/cut.bin"
    client = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-u", f"{alice.login}:{alice.password}", "--limit-rate", "4M",
        "-T", str(big), url, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await portal.until(
            lambda: any(e.target == "cut.bin" for e in portal.events(DataFileRegistered))
        )
        await asyncio.sleep(0.5)  # some bytes on their way into the store
    except BaseException:
        print(portal.log("portal"))
        raise
    finally:
        client.kill()
        await client.wait()
    dfid = next(e for e in portal.events(DataFileRegistered) if e.target == "cut.bin").data_file_id
    try:
        await portal.until(
            lambda: any(e.data_file_id == dfid for e in portal.events(DataFileRegistrationFailed))
        )
    except BaseException:
        print(portal.log("portal"))
        raise
    assert not any(e.data_file_id == dfid for e in portal.events(DataFileStored))
    assert not any(e.data_file_id == dfid for e in portal.events(TransferQueued))
    assert not list(portal.store.rglob(f"*{dfid}*"))
    assert not any(e.path == "cut.bin" for e in portal.events(PortalUploaded))


async def test_pasv_announces_the_advertised_address_and_a_silent_client_is_dropped(
    portal: PortalStack, sites: dict[str, Site]
) -> None:
    """Restarted with ``ECPDS_PORTAL_FTP_ADVERTISED_ADDRESS`` (a NAT's public address) and a
    2 s ``ECPDS_PORTAL_FTP_IDLE_TIMEOUT``: PASV announces that address, with a port of the
    passive range; a download slower than the idle time completes (a transfer keeps its
    control connection open); a client silent longer is told 421 and its session ends.
    The last test of the module (clients here could not reach that address)."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    portal.stop("portal")
    await asyncio.to_thread(
        portal.start_portal,
        {
            "ECPDS_PORTAL_FTP_ADVERTISED_ADDRESS": "192.0.2.7",
            "ECPDS_PORTAL_FTP_IDLE_TIMEOUT": "2",
        },
    )

    def pasv() -> tuple[str, int]:
        with _ftp(portal, alice) as client:
            return ftplib.parse227(client.sendcmd("PASV"))  # noqa: S321 - reads an answer

    host, port = await asyncio.to_thread(pasv)
    assert host == "192.0.2.7"
    assert portal.passive[0] <= port <= portal.passive[1]
    url = f"ftp://127.0.0.1:{portal.ftp_port}/{dest}/by-curl.bin"  # 500,000 bytes in ~4 s
    slow = await asyncio.to_thread(_curl, portal, alice, url, "--limit-rate", "120K")
    assert slow.returncode == 0, slow.stderr.decode() + portal.log("portal")
    assert len(slow.stdout) == 500_000

    def silent() -> str:
        with _ftp(portal, alice) as client:
            time.sleep(3.5)
            try:
                return client.sendcmd("PWD")
            except ftplib.error_temp as dropped:
                return str(dropped)

    assert (await asyncio.to_thread(silent)).startswith("421")
