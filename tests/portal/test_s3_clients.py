"""The portal's S3 door against stock command-line clients: the ``aws`` CLI (pinned in
``.venv-tools``, CRC32 trailers by default), Debian's ``s3cmd`` and ``rclone``'s s3 remote;
each lists, pushes (multipart too) and pulls, and is refused what its user is not granted."""

from __future__ import annotations

import asyncio
import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from producers.portal.s3keys import seal, secrets_file
from tests.conftest import ROOT
from tests.portal.conftest import PortalStack, Site

pytestmark = pytest.mark.kafka

AWS = ROOT / ".venv-tools" / "bin" / "aws"
MIB = 1024 * 1024

USERS = """
users:
  - login: cli-{tag}
    password: cli-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, put, size, mtime]
  - login: ro-{tag}
    password: ro-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, size]
"""


@pytest.fixture(scope="module")
async def users(portal: PortalStack) -> dict[str, Site]:
    """cli (dir get put size mtime) and ro (no put), their S3 secrets sealed."""
    await portal.apply(USERS.format(tag=portal.tag))
    found = {
        n: Site(f"{n}-{portal.tag}", f"{n}-secret", Path("/nonexistent")) for n in ("cli", "ro")
    }
    for site in found.values():
        seal(secrets_file(portal.root), portal.key_file, site.login, site.password)
    return found


def _cert(portal: PortalStack) -> Path:
    return portal.root / "secrets" / "portal" / "tls" / "server.crt"


def aws(portal: PortalStack, site: Site, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``aws`` CLI on the S3 door as ``site``, with no configuration of its own."""
    if not AWS.exists():
        pytest.skip("no .venv-tools/bin/aws (infra/install.sh installs it)")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(cwd), "AWS_ACCESS_KEY_ID": site.login,
        "AWS_SECRET_ACCESS_KEY": site.password, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CA_BUNDLE": str(_cert(portal)), "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "1",
    }  # fmt: skip
    argv = [str(AWS), "--endpoint-url", f"https://127.0.0.1:{portal.s3_port}", *args]
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def s3cmd(
    portal: PortalStack, site: Site, *args: str, cwd: Path, v2: bool = False
) -> subprocess.CompletedProcess[str]:
    """Debian's ``s3cmd`` on the S3 door as ``site`` (path-style, SigV4 or with ``v2`` its
    SigV2 ``Authorization: AWS`` header, TLS verified)."""
    if shutil.which("s3cmd") is None:
        pytest.skip("no s3cmd (infra/apt-packages.txt installs it)")
    config = cwd / f"s3cmd-{site.login}{'-v2' if v2 else ''}.cfg"
    host = f"127.0.0.1:{portal.s3_port}"
    config.write_text(
        "[default]\n"
        f"access_key = {site.login}\nsecret_key = {site.password}\n"
        f"host_base = {host}\nhost_bucket = {host}\nbucket_location = us-east-1\n"
        f"use_https = True\ncheck_ssl_certificate = True\nca_certs_file = {_cert(portal)}\n"
        f"signature_v2 = {v2}\nmultipart_chunk_size_mb = 5\n"
    )
    return subprocess.run(
        ["s3cmd", "-c", str(config), *args],
        cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


async def test_aws_cli_lists_pushes_multipart_and_pulls(
    portal: PortalStack, users: dict[str, Site], tmp_path: Path
) -> None:
    """``aws s3 cp`` pushes a 12 MiB file (multipart, CRC32 trailers) and pulls it back
    byte for byte; ``aws s3 ls`` lists buckets and keys; ``aws s3api head-object`` tells the
    size; ``aws s3 presign`` (SigV2) makes a URL curl fetches; a user without ``put`` is
    refused (AccessDenied)."""
    cli, bucket = users["cli"], f"pickup-{portal.tag}"
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * MIB))
    pushed = await asyncio.to_thread(
        aws, portal, cli, "s3", "cp", str(source), f"s3://{bucket}/aws/big.bin", cwd=tmp_path
    )
    assert pushed.returncode == 0, pushed.stderr + portal.log("portal")
    await portal.listed(bucket, "aws/big.bin")
    buckets = await asyncio.to_thread(aws, portal, cli, "s3", "ls", cwd=tmp_path)
    assert bucket in buckets.stdout
    listed = await asyncio.to_thread(
        aws, portal, cli, "s3", "ls", f"s3://{bucket}/aws/", cwd=tmp_path
    )
    assert "big.bin" in listed.stdout, listed.stderr
    pulled = await asyncio.to_thread(
        aws,
        portal,
        cli,
        "s3",
        "cp",
        f"s3://{bucket}/aws/big.bin",
        str(tmp_path / "back.bin"),
        cwd=tmp_path,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert filecmp.cmp(source, tmp_path / "back.bin", shallow=False)
    head = await asyncio.to_thread(
        aws,
        portal,
        cli,
        "s3api",
        "head-object",
        "--bucket",
        bucket,
        "--key",
        "aws/big.bin",
        cwd=tmp_path,
    )
    assert f'"ContentLength": {12 * MIB}' in head.stdout
    presigned = await asyncio.to_thread(
        aws, portal, cli, "s3", "presign", f"s3://{bucket}/aws/big.bin", cwd=tmp_path
    )
    fetched = await asyncio.to_thread(
        subprocess.run,
        ["curl", "-sS", "--fail", "--cacert", str(_cert(portal)), "-o", str(tmp_path / "pre.bin"),
         presigned.stdout.strip()],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    assert filecmp.cmp(source, tmp_path / "pre.bin", shallow=False)
    small = tmp_path / "small.txt"
    small.write_text("no")
    refused = await asyncio.to_thread(
        aws, portal, users["ro"], "s3", "cp", str(small), f"s3://{bucket}/aws/no.txt", cwd=tmp_path
    )
    assert refused.returncode != 0
    assert "AccessDenied" in refused.stderr


async def test_s3cmd_lists_pushes_multipart_and_pulls(
    portal: PortalStack, users: dict[str, Site], tmp_path: Path
) -> None:
    """``s3cmd put`` pushes a 12 MiB file in 5 MiB parts and ``s3cmd get`` pulls it back;
    ``s3cmd ls`` lists buckets and keys; ``s3cmd info`` tells the MD5; a user without ``put``
    is refused."""
    cli, bucket = users["cli"], f"pickup-{portal.tag}"
    source = tmp_path / "s3cmd.bin"
    source.write_bytes(os.urandom(12 * MIB))
    pushed = await asyncio.to_thread(
        s3cmd,
        portal,
        cli,
        "--debug",
        "put",
        str(source),
        f"s3://{bucket}/s3cmd/s3cmd.bin",
        cwd=tmp_path,
    )
    assert pushed.returncode == 0, pushed.stderr + portal.log("portal")
    assert "partNumber=3&uploadId=" in pushed.stderr  # in 5 MiB parts
    await portal.listed(bucket, "s3cmd/s3cmd.bin")
    buckets = await asyncio.to_thread(s3cmd, portal, cli, "ls", cwd=tmp_path)
    assert f"s3://{bucket}" in buckets.stdout, buckets.stderr
    listed = await asyncio.to_thread(
        s3cmd, portal, cli, "ls", f"s3://{bucket}/s3cmd/", cwd=tmp_path
    )
    assert "s3cmd.bin" in listed.stdout, listed.stderr
    pulled = await asyncio.to_thread(
        s3cmd,
        portal,
        cli,
        "get",
        f"s3://{bucket}/s3cmd/s3cmd.bin",
        str(tmp_path / "back.bin"),
        cwd=tmp_path,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert filecmp.cmp(source, tmp_path / "back.bin", shallow=False)
    small = tmp_path / "small.txt"
    small.write_text("no")
    refused = await asyncio.to_thread(
        s3cmd, portal, users["ro"], "put", str(small), f"s3://{bucket}/s3cmd/no.txt", cwd=tmp_path
    )
    assert refused.returncode != 0
    assert "AccessDenied" in refused.stderr


async def test_s3cmd_signing_with_sigv2_headers_pushes_and_pulls(
    portal: PortalStack, users: dict[str, Site], tmp_path: Path
) -> None:
    """``s3cmd`` told to sign with SigV2 (``Authorization: AWS key:signature``, as legacy
    clients do) lists, pushes a 12 MiB file in 5 MiB parts and pulls it back (a wrong
    signature is pinned in test_sigv2: here it would count toward the defender's ban)."""
    cli, bucket = users["cli"], f"pickup-{portal.tag}"
    source = tmp_path / "v2.bin"
    source.write_bytes(os.urandom(12 * MIB))
    pushed = await asyncio.to_thread(
        s3cmd, portal, cli, "--debug", "put", str(source), f"s3://{bucket}/v2/v2.bin",
        cwd=tmp_path, v2=True,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr[-3000:] + portal.log("portal")
    assert "Authorization: AWS " in pushed.stderr or "'Authorization': 'AWS " in pushed.stderr
    await portal.listed(bucket, "v2/v2.bin")
    listed = await asyncio.to_thread(
        s3cmd, portal, cli, "ls", f"s3://{bucket}/v2/", cwd=tmp_path, v2=True
    )
    assert "v2.bin" in listed.stdout, listed.stderr
    pulled = await asyncio.to_thread(
        s3cmd, portal, cli, "get", f"s3://{bucket}/v2/v2.bin", str(tmp_path / "back.bin"),
        cwd=tmp_path, v2=True,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert filecmp.cmp(source, tmp_path / "back.bin", shallow=False)


async def test_rclone_copies_both_ways_with_multipart_and_checks(
    portal: PortalStack, users: dict[str, Site], tmp_path: Path
) -> None:
    """rclone's s3 remote copies a folder up (one file in 5 MiB parts) and back down, ``ls``
    lists it and ``check`` finds both sides equal; a user without ``put`` is refused."""
    cli, bucket = users["cli"], f"pickup-{portal.tag}"
    local = tmp_path / "up"
    local.mkdir()
    (local / "big.bin").write_bytes(os.urandom(11 * MIB))
    for i in range(3):
        (local / f"small-{i}.txt").write_bytes(os.urandom(1000 + i))
    chunks = ("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    up = await asyncio.to_thread(
        portal.rclone, cli, "s3", "copy", *chunks, str(local), f"p:{bucket}/rclone"
    )
    assert up.returncode == 0, up.stderr + portal.log("portal")
    for name in ("big.bin", "small-2.txt"):
        await portal.listed(bucket, f"rclone/{name}")
    listed = await asyncio.to_thread(portal.rclone, cli, "s3", "ls", f"p:{bucket}/rclone")
    assert sorted(line.split()[-1] for line in listed.stdout.splitlines()) == sorted(
        ["big.bin", "small-0.txt", "small-1.txt", "small-2.txt"]
    ), listed.stderr
    back = tmp_path / "back"
    down = await asyncio.to_thread(
        portal.rclone, cli, "s3", "copy", f"p:{bucket}/rclone", str(back)
    )
    assert down.returncode == 0, down.stderr
    assert filecmp.cmp(local / "big.bin", back / "big.bin", shallow=False)
    checked = await asyncio.to_thread(
        portal.rclone, cli, "s3", "check", str(local), f"p:{bucket}/rclone"
    )
    assert checked.returncode == 0, checked.stderr
    assert "0 differences found" in checked.stderr
    refused = await asyncio.to_thread(
        portal.rclone, users["ro"], "s3", "copy", str(local / "small-0.txt"), f"p:{bucket}/no"
    )
    assert refused.returncode != 0
    assert "AccessDenied" in refused.stderr
