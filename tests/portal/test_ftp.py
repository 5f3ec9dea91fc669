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
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from bus.events.portal import (
    PortalAccessDenied,
    PortalDownloaded,
    PortalUploaded,
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
    MLSD, LIST and NLST list it with its size, SIZE and MDTM answer, RETR returns the same
    bytes as a complete ``PortalDownloaded`` and the held transfer becomes DONE."""
    alice, dest = sites["alice"], f"pickup-{portal.tag}"
    data = os.urandom(3 * 1024 * 1024 + 17)
    await _put(portal, alice, "data.bin", data)
    uploaded = next(e for e in portal.events(PortalUploaded) if e.path == "data.bin")
    assert (uploaded.size, uploaded.protocol, uploaded.destination) == (len(data), "ftp", dest)

    def read() -> tuple[dict[str, dict[str, str]], list[str], list[str], str, str, bytes]:
        with _ftp(portal, alice) as client:
            client.cwd(f"/{dest}")
            facts = dict(client.mlsd())
            lines: list[str] = []
            client.retrlines("LIST", lines.append)
            names = client.nlst()
            size = client.sendcmd("SIZE data.bin")
            mtime = client.sendcmd("MDTM data.bin")
            got = io.BytesIO()
            client.retrbinary("RETR data.bin", got.write)
            return facts, lines, names, size, mtime, got.getvalue()

    facts, lines, names, size, mtime, got = await asyncio.to_thread(read)
    assert facts["data.bin"]["type"] == "file"
    assert facts["data.bin"]["size"] == str(len(data))
    assert any(line.endswith(" data.bin") and f" {len(data)} " in line for line in lines)
    assert "data.bin" in names
    assert size == f"213 {len(data)}"
    assert re.fullmatch(r"213 \d{14}", mtime)
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
