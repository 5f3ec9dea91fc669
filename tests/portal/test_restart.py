"""The portal stopped or killed with an upload in flight: nothing half-arrived is ever
registered, and no object is left (a module of its own: it stops its portal)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bus.events.datafiles import DataFileRegistered, DataFileRegistrationFailed, DataFileStored
from bus.events.transfers import TransferQueued
from producers.portal.s3keys import seal, secrets_file
from producers.portal.s3parts import MIN_PART
from tests.portal.conftest import SSH_OPTIONS, PortalStack
from tests.portal.test_s3 import client

pytestmark = pytest.mark.kafka


async def _upload_in_flight(portal: PortalStack, tmp_path: Path, name: str) -> tuple[str, object]:
    """Start an ``sftp put`` of 1 GiB of zeros as ``name``; once registered, its data file id
    and the client process."""
    login = f"mover-{portal.tag}"
    site = portal.site(login, "unused")
    await portal.apply(
        f"""
users:
  - login: {login}
    destinations: [pickup-{portal.tag}]
    operations: [dir, put]
    ssh_authorized_keys: ["{site.public}"]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    big = tmp_path / f"{name}.src"
    with big.open("wb") as out:
        out.truncate(1024**3)
    batch = tmp_path / f"{name}.batch"
    batch.write_text(f"put {big} /pickup-{portal.tag}/{name}\n")
    argv = [
        "sftp", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(site.key),
        *SSH_OPTIONS, "-P", str(portal.sftp_port), "-b", str(batch), f"{login}@127.0.0.1",
    ]  # fmt: skip
    errors = (tmp_path / f"{name}.err").open("wb")
    client = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=errors)
    errors.close()  # the client holds its own copy
    try:
        await portal.until(
            lambda: any(e.target == name for e in portal.events(DataFileRegistered)), timeout=30
        )
    except TimeoutError:
        print("sftp:", (tmp_path / f"{name}.err").read_text(), "portal:", portal.log("portal"))
        raise
    await asyncio.sleep(0.3)  # bytes on their way into the store
    found = next(e for e in portal.events(DataFileRegistered) if e.target == name)
    return found.data_file_id, client


async def _nothing_left(portal: PortalStack, dfid: str, *, killed: bool = False) -> None:
    await portal.until(
        lambda: any(e.data_file_id == dfid for e in portal.events(DataFileRegistrationFailed))
    )
    assert not any(e.data_file_id == dfid for e in portal.events(DataFileStored))
    assert not any(e.data_file_id == dfid for e in portal.events(TransferQueued))
    left = [p.name for p in portal.store.rglob(f"*{dfid}*")]
    if killed:
        # a SIGKILLed writer leaves the store's own temporary file (".<id>.<random>.tmp"),
        # never an object; nothing in ecpds sweeps those yet (store/, not the portal)
        left = [n for n in left if not (n.startswith(".") and n.endswith(".tmp"))]
    assert left == []


async def test_a_stop_cuts_uploads_in_flight_and_a_kill_is_recovered_at_the_next_start(
    portal: PortalStack, tmp_path: Path
) -> None:
    """SIGTERM with an upload in flight: the portal drops the connection and the registration
    is closed failed before it exits. SIGKILL with one in flight: the next start closes it
    (``recover``). Neither leaves an object."""
    dfid, client = await _upload_in_flight(portal, tmp_path, "stopped.bin")
    await asyncio.to_thread(portal.stop, "portal")
    await _nothing_left(portal, dfid)
    assert isinstance(client, asyncio.subprocess.Process)
    assert await client.wait() != 0

    await asyncio.to_thread(portal.start_portal)
    dfid, client = await _upload_in_flight(portal, tmp_path, "killed.bin")
    process = portal.processes.pop("portal")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert isinstance(client, asyncio.subprocess.Process)
    await client.wait()
    assert not any(e.data_file_id == dfid for e in portal.events(DataFileRegistrationFailed))
    await asyncio.to_thread(portal.start_portal)
    await _nothing_left(portal, dfid, killed=True)


async def test_a_multipart_upload_survives_a_restart_and_a_kill(portal: PortalStack) -> None:
    """Parts sent before the portal is stopped, then before it is killed mid-part, are still
    there at the next start: ListParts shows those that fully arrived (a part file the kill cut
    is dropped), the client sends the rest, and Complete registers the whole object."""
    login = f"multi-{portal.tag}"
    await portal.apply(
        f"""
users:
  - login: {login}
    password: multi-secret
    destinations: [pickup-{portal.tag}]
    operations: [dir, get, put]
"""
    )
    seal(secrets_file(portal.root), portal.key_file, login, "multi-secret")
    await asyncio.sleep(1.0)  # the portal follows the configuration topic
    bucket, key = f"pickup-{portal.tag}", "kept/big.bin"
    pieces = [os.urandom(MIN_PART), os.urandom(MIN_PART), os.urandom(1000)]
    s3 = client(portal, login, "multi-secret")
    upload = (await asyncio.to_thread(s3.create_multipart_upload, Bucket=bucket, Key=key))[
        "UploadId"
    ]

    def send(number: int) -> dict[str, object]:
        sent = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=pieces[number - 1]
        )
        return {"PartNumber": number, "ETag": sent["ETag"]}

    parts = [await asyncio.to_thread(send, 1)]
    await asyncio.to_thread(portal.stop, "portal")
    await asyncio.to_thread(portal.start_portal)
    s3 = client(portal, login, "multi-secret")  # the door's port changed
    listed = await asyncio.to_thread(s3.list_parts, Bucket=bucket, Key=key, UploadId=upload)
    assert [(p["PartNumber"], p["ETag"]) for p in listed["Parts"]] == [(1, parts[0]["ETag"])]
    parts.append(await asyncio.to_thread(send, 2))
    folder = portal.root / "portal" / "multipart" / upload
    (folder / "3.cut").write_bytes(b"half a part")  # as a kill mid-part leaves it
    process = portal.processes.pop("portal")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    await asyncio.to_thread(portal.start_portal)
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2", "upload.json"]
    s3 = client(portal, login, "multi-secret")
    parts.append(await asyncio.to_thread(send, 3))
    await asyncio.to_thread(
        s3.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=upload,
        MultipartUpload={"Parts": parts},
    )  # fmt: skip
    assert not folder.exists()
    await portal.listed(bucket, key)
    got = await asyncio.to_thread(s3.get_object, Bucket=bucket, Key=key)
    assert got["Body"].read() == b"".join(pieces)
