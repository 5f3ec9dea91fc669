"""The portal's S3 door against boto3 (its installed release, default checksum settings: CRC32
trailers on uploads) and curl with presigned URLs, with real Kafka, PostgreSQL, projector and
object store: buckets, listings, ranges and conditions, puts, copies, deletes, the multipart
set, and every refusal (grants, signatures, expiry, quotas, max connections, traversal)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from bus.events.portal import PortalAccessDenied, PortalUploaded
from bus.events.transfers import TransferDownloaded
from producers.portal.s3keys import seal, secrets_file
from producers.portal.s3parts import part_tag
from producers.portal.sigv4 import STREAMING_SIGNED, signing_key
from tests.portal.conftest import PortalStack

pytestmark = pytest.mark.kafka

USERS = """
users:
  - login: s3-{tag}
    password: s3-secret
    destinations: [pickup-{tag}, other-{tag}]
    operations: [dir, get, put, size, mtime, delete]
  - login: peek-{tag}
    password: peek-secret
    destinations: [pickup-{tag}]
    operations: [dir]
  - login: one-{tag}
    password: one-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, size]
    properties:
      portal.maxConnections: "1"
      portal.maxDownloadBytes: "1500000"
  - login: nosecret-{tag}
    password: nosecret-secret
    destinations: [pickup-{tag}]
    operations: [dir, get]
"""


@pytest.fixture(scope="module")
async def logins(portal: PortalStack) -> dict[str, tuple[str, str]]:
    """Four data users, all but ``nosecret`` with their S3 secret (the password) sealed."""
    await portal.apply(USERS.format(tag=portal.tag))
    found = {
        name: (f"{name}-{portal.tag}", f"{name}-secret")
        for name in ("s3", "peek", "one", "nosecret")
    }
    path = secrets_file(portal.root)
    for name in ("s3", "peek", "one"):
        seal(path, portal.key_file, *found[name])
    return found


def client(portal: PortalStack, login: str, secret: str, **config: Any) -> Any:
    """A boto3 S3 client on the portal's S3 door, trusting its certificate."""
    return boto3.client(
        "s3",
        endpoint_url=f"https://127.0.0.1:{portal.s3_port}",
        aws_access_key_id=login,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=str(portal.root / "secrets" / "portal" / "tls" / "server.crt"),
        config=Config(
            s3={"addressing_style": "path", **config.pop("s3", {})},
            retries={"max_attempts": 1, "mode": "standard"},
            **config,
        ),
    )  # fmt: skip


def code(call: Callable[[], object]) -> str:
    """The S3 error code ``call`` fails with."""
    with pytest.raises(ClientError) as failed:
        call()
    return str(failed.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def s3(portal: PortalStack, logins: dict[str, tuple[str, str]]) -> Any:
    return client(portal, *logins["s3"])


@pytest.fixture(scope="module")
async def put(portal: PortalStack, s3: Any) -> bytes:
    """``dir/obj.bin`` put into pickup-<tag> by boto3's default PutObject, and projected."""
    data = os.urandom(300_000)
    answer = await asyncio.to_thread(
        s3.put_object, Bucket=f"pickup-{portal.tag}", Key="dir/obj.bin", Body=data
    )
    assert answer["ETag"] == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
    await portal.listed(f"pickup-{portal.tag}", "dir/obj.bin")
    return data


def test_boto3_release_sends_crc32_trailers_by_default() -> None:
    """The boto3 under test is one whose uploads carry a CRC32 trailer unless told otherwise
    (1.36 and later): the form many S3-compatible servers broke on."""
    major, minor = (int(p) for p in botocore.__version__.split(".")[:2])
    assert (major, minor) >= (1, 36)


async def test_buckets_are_the_destinations_seen(
    portal: PortalStack, s3: Any, logins: dict[str, tuple[str, str]]
) -> None:
    """ListBuckets names the user's destinations; HeadBucket and GetBucketLocation answer
    for one it sees, and a destination it does not see is ``NoSuchBucket`` (404)."""
    names = [b["Name"] for b in (await asyncio.to_thread(s3.list_buckets))["Buckets"]]
    assert names == sorted([f"other-{portal.tag}", f"pickup-{portal.tag}"])
    await asyncio.to_thread(s3.head_bucket, Bucket=f"pickup-{portal.tag}")
    where = await asyncio.to_thread(s3.get_bucket_location, Bucket=f"pickup-{portal.tag}")
    assert where["LocationConstraint"] is None
    peek = client(portal, *logins["peek"])
    assert code(lambda: peek.list_objects_v2(Bucket=f"other-{portal.tag}")) == "NoSuchBucket"
    assert code(lambda: peek.head_bucket(Bucket=f"other-{portal.tag}")) == "404"


async def test_listings_by_prefix_delimiter_and_pages(
    portal: PortalStack, s3: Any, put: bytes
) -> None:
    """ListObjectsV2 and v1 list keys with their size and MD5 ETag, group by ``/``, page with
    max-keys and a continuation token, and start after a key."""
    bucket = f"pickup-{portal.tag}"
    for name in ("a.txt", "b.txt", "c.txt"):
        await asyncio.to_thread(s3.put_object, Bucket=bucket, Key=f"page/{name}", Body=b"x")
    await portal.listed(bucket, "page/c.txt")
    top = await asyncio.to_thread(s3.list_objects_v2, Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/", "page/"]
    deep = await asyncio.to_thread(s3.list_objects_v2, Bucket=bucket, Prefix="dir/")
    (obj,) = deep["Contents"]
    assert obj["Key"] == "dir/obj.bin"
    assert obj["Size"] == len(put)
    assert obj["ETag"] == f'"{hashlib.md5(put, usedforsecurity=False).hexdigest()}"'
    first = await asyncio.to_thread(s3.list_objects_v2, Bucket=bucket, Prefix="page/", MaxKeys=2)
    assert [o["Key"] for o in first["Contents"]] == ["page/a.txt", "page/b.txt"]
    assert first["IsTruncated"]
    rest = await asyncio.to_thread(
        s3.list_objects_v2,
        Bucket=bucket,
        Prefix="page/",
        ContinuationToken=first["NextContinuationToken"],
    )
    assert [o["Key"] for o in rest["Contents"]] == ["page/c.txt"]
    after = await asyncio.to_thread(
        s3.list_objects_v2, Bucket=bucket, Prefix="page/", StartAfter="page/a.txt"
    )
    assert [o["Key"] for o in after["Contents"]] == ["page/b.txt", "page/c.txt"]
    v1 = await asyncio.to_thread(
        s3.list_objects, Bucket=bucket, Prefix="page/", Marker="page/b.txt"
    )
    assert [o["Key"] for o in v1["Contents"]] == ["page/c.txt"]
    flat = await asyncio.to_thread(s3.list_objects_v2, Bucket=bucket)
    assert {"dir/obj.bin", "page/a.txt"} <= {o["Key"] for o in flat["Contents"]}


async def test_get_ranges_conditions_and_a_whole_get_marks_the_transfer_done(
    portal: PortalStack, s3: Any, put: bytes
) -> None:
    """HeadObject tells size and ETag; a ranged GET answers its bytes (206) and an
    unsatisfiable range ``InvalidRange``; If-None-Match with the ETag is 304 and If-Match with
    another 412; a whole GET returns the bytes and marks the held transfer DONE."""
    bucket = f"pickup-{portal.tag}"
    head = await asyncio.to_thread(s3.head_object, Bucket=bucket, Key="dir/obj.bin")
    assert head["ContentLength"] == len(put)
    etag = head["ETag"]
    part = await asyncio.to_thread(
        s3.get_object, Bucket=bucket, Key="dir/obj.bin", Range="bytes=10-19"
    )
    assert part["Body"].read() == put[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(put)}"
    beyond = f"bytes={len(put)}-"
    assert code(lambda: s3.get_object(Bucket=bucket, Key="dir/obj.bin", Range=beyond)) == (
        "InvalidRange"
    )
    assert code(lambda: s3.get_object(Bucket=bucket, Key="dir/obj.bin", IfNoneMatch=etag)) == (
        "304"
    )
    assert code(lambda: s3.get_object(Bucket=bucket, Key="dir/obj.bin", IfMatch='"0"')) == (
        "PreconditionFailed"
    )
    whole = await asyncio.to_thread(s3.get_object, Bucket=bucket, Key="dir/obj.bin")
    assert whole["Body"].read() == put
    await portal.until(
        lambda: any(e.bytes_sent == len(put) for e in portal.events(TransferDownloaded))
    )
    assert code(lambda: s3.get_object(Bucket=bucket, Key="dir/none.bin")) == "NoSuchKey"


async def test_multipart_upload_registers_once_complete_and_abort_leaves_nothing(
    portal: PortalStack, s3: Any
) -> None:
    """Parts are never visible; ListParts and ListMultipartUploads show them; a part sent with
    Content-MD5 has its MD5 as ETag, one that boto3 vouches for with its default CRC32 the tag
    made from that checksum; Complete registers one object whose ETag is S3's
    md5-of-part-ETags-N; an aborted upload leaves no part kept and nothing registered."""
    bucket = f"pickup-{portal.tag}"
    data = os.urandom(11 * 1024 * 1024)
    started = await asyncio.to_thread(s3.create_multipart_upload, Bucket=bucket, Key="mp/big.bin")
    upload = started["UploadId"]
    pieces = [
        data[: 5 * 1024 * 1024],
        data[5 * 1024 * 1024 : 10 * 1024 * 1024],
        data[10 * 1024 * 1024 :],
    ]
    parts = []
    for number, piece in enumerate(pieces, 1):
        md5 = hashlib.md5(piece, usedforsecurity=False)
        sent = await asyncio.to_thread(
            s3.upload_part,
            Bucket=bucket,
            Key="mp/big.bin",
            UploadId=upload,
            PartNumber=number,
            Body=piece,
            **({"ContentMD5": base64.b64encode(md5.digest()).decode()} if number == 1 else {}),
        )
        parts.append({"PartNumber": number, "ETag": sent["ETag"]})
    assert parts[0]["ETag"] == f'"{hashlib.md5(pieces[0], usedforsecurity=False).hexdigest()}"'
    crc = base64.b64encode(zlib.crc32(pieces[1]).to_bytes(4, "big")).decode()
    tagged = part_tag({"x-amz-checksum-crc32": crc}, len(pieces[1]))
    assert parts[1]["ETag"] == f'"{tagged}"'
    listed = await asyncio.to_thread(
        s3.list_parts, Bucket=bucket, Key="mp/big.bin", UploadId=upload
    )
    assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in pieces]
    uploads = await asyncio.to_thread(s3.list_multipart_uploads, Bucket=bucket)
    assert [u["UploadId"] for u in uploads["Uploads"]] == [upload]
    visible = await asyncio.to_thread(s3.list_objects_v2, Bucket=bucket, Prefix="mp/")
    assert "Contents" not in visible
    done = await asyncio.to_thread(
        s3.complete_multipart_upload, Bucket=bucket, Key="mp/big.bin", UploadId=upload,
        MultipartUpload={"Parts": parts},
    )  # fmt: skip
    digests = b"".join(bytes.fromhex(p["ETag"].strip('"')) for p in parts)
    assert done["ETag"] == f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-3"'
    await portal.listed(bucket, "mp/big.bin")
    got = await asyncio.to_thread(s3.get_object, Bucket=bucket, Key="mp/big.bin")
    assert (
        hashlib.md5(got["Body"].read(), usedforsecurity=False).digest()
        == hashlib.md5(data, usedforsecurity=False).digest()
    )
    kept = portal.root / "portal" / "multipart"
    aborted = await asyncio.to_thread(s3.create_multipart_upload, Bucket=bucket, Key="mp/no.bin")
    await asyncio.to_thread(
        s3.upload_part,
        Bucket=bucket,
        Key="mp/no.bin",
        UploadId=aborted["UploadId"],
        PartNumber=1,
        Body=b"z" * 1000,
    )
    assert [p.name for p in (kept / aborted["UploadId"]).iterdir()] != []
    await asyncio.to_thread(
        s3.abort_multipart_upload, Bucket=bucket, Key="mp/no.bin", UploadId=aborted["UploadId"]
    )
    assert not (kept / aborted["UploadId"]).exists()
    assert (
        code(lambda: s3.list_parts(Bucket=bucket, Key="mp/no.bin", UploadId=aborted["UploadId"]))
        == "NoSuchUpload"
    )
    assert not [e for e in portal.events(PortalUploaded) if e.path == "mp/no.bin"]


async def test_copy_and_deletes(portal: PortalStack, s3: Any, put: bytes) -> None:
    """CopyObject registers a copy with the source's bytes; a registered object is not
    deleted (``MethodNotAllowed``), a key not there is (204), DeleteObjects answers per key;
    UploadPartCopy makes parts of ranges of an object (ETag: the range's MD5), and a complete
    of parts under 5 MiB but the last is ``EntityTooSmall``."""
    bucket = f"pickup-{portal.tag}"
    copied = await asyncio.to_thread(
        s3.copy_object, Bucket=f"other-{portal.tag}", Key="copy.bin",
        CopySource={"Bucket": bucket, "Key": "dir/obj.bin"},
    )  # fmt: skip
    assert (
        copied["CopyObjectResult"]["ETag"]
        == f'"{hashlib.md5(put, usedforsecurity=False).hexdigest()}"'
    )
    await portal.listed(f"other-{portal.tag}", "copy.bin")
    assert code(lambda: s3.delete_object(Bucket=bucket, Key="dir/obj.bin")) == "MethodNotAllowed"
    await asyncio.to_thread(s3.delete_object, Bucket=bucket, Key="dir/never.bin")
    many = await asyncio.to_thread(
        s3.delete_objects, Bucket=bucket,
        Delete={"Objects": [{"Key": "dir/obj.bin"}, {"Key": "dir/never.bin"}]},
    )  # fmt: skip
    assert [d["Key"] for d in many["Deleted"]] == ["dir/never.bin"]
    assert [e["Code"] for e in many["Errors"]] == ["MethodNotAllowed"]
    other = f"other-{portal.tag}"
    started = await asyncio.to_thread(s3.create_multipart_upload, Bucket=other, Key="parts.bin")
    ranges = ["bytes=0-99999", "bytes=100000-299999"]
    etags = []
    for number, wanted in enumerate(ranges, 1):
        copied_part = await asyncio.to_thread(
            s3.upload_part_copy, Bucket=other, Key="parts.bin", UploadId=started["UploadId"],
            PartNumber=number, CopySource={"Bucket": bucket, "Key": "dir/obj.bin"},
            CopySourceRange=wanted,
        )  # fmt: skip
        etags.append(copied_part["CopyPartResult"]["ETag"])
    assert etags[0] == f'"{hashlib.md5(put[:100000], usedforsecurity=False).hexdigest()}"'
    listed = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]}
    assert code(
        lambda: s3.complete_multipart_upload(
            Bucket=other, Key="parts.bin", UploadId=started["UploadId"], MultipartUpload=listed
        )
    ) == "EntityTooSmall"  # fmt: skip
    await asyncio.to_thread(
        s3.abort_multipart_upload, Bucket=other, Key="parts.bin", UploadId=started["UploadId"]
    )


async def test_operations_not_granted_are_access_denied(
    portal: PortalStack, logins: dict[str, tuple[str, str]], put: bytes
) -> None:
    """A user with ``dir`` only lists, and is ``AccessDenied`` for Get, Head (size), Put,
    multipart, Delete and Copy; each refusal is a ``PortalAccessDenied``."""
    peek, bucket = client(portal, *logins["peek"]), f"pickup-{portal.tag}"
    await asyncio.to_thread(peek.list_objects_v2, Bucket=bucket)
    assert code(lambda: peek.get_object(Bucket=bucket, Key="dir/obj.bin")) == "AccessDenied"
    assert code(lambda: peek.head_object(Bucket=bucket, Key="dir/obj.bin")) == "403"
    assert code(lambda: peek.put_object(Bucket=bucket, Key="x.bin", Body=b"x")) == "AccessDenied"
    assert code(lambda: peek.create_multipart_upload(Bucket=bucket, Key="x.bin")) == "AccessDenied"
    assert code(lambda: peek.delete_object(Bucket=bucket, Key="dir/obj.bin")) == "AccessDenied"
    source = {"Bucket": bucket, "Key": "dir/obj.bin"}
    assert code(lambda: peek.copy_object(Bucket=bucket, Key="c.bin", CopySource=source)) == (
        "AccessDenied"
    )
    await portal.until(
        lambda: any(
            e.user == logins["peek"][0] and e.operation == "put" and e.protocol == "s3"
            for e in portal.events(PortalAccessDenied)
        )
    )


async def test_wrong_secrets_and_unknown_keys_are_refused(
    portal: PortalStack, logins: dict[str, tuple[str, str]]
) -> None:
    """A wrong secret is ``SignatureDoesNotMatch``, an unknown login or one whose S3 secret is
    not sealed ``InvalidAccessKeyId``."""
    bucket = f"pickup-{portal.tag}"
    wrong = client(portal, logins["s3"][0], "not-the-password")
    assert code(lambda: wrong.list_objects_v2(Bucket=bucket)) == "SignatureDoesNotMatch"
    nobody = client(portal, "nobody", "x")
    assert code(lambda: nobody.list_buckets()) == "InvalidAccessKeyId"
    unsealed = client(portal, *logins["nosecret"])
    assert code(lambda: unsealed.list_buckets()) == "InvalidAccessKeyId"


def _curl(portal: PortalStack, url: str, *args: str) -> tuple[int, bytes]:
    cert = portal.root / "secrets" / "portal" / "tls" / "server.crt"
    done = subprocess.run(
        ["curl", "-sS", "--path-as-is", "--cacert", str(cert), "-w", "\\n%{http_code}", *args, url],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


async def test_presigned_get_and_put_with_curl_and_their_expiry(
    portal: PortalStack, s3: Any, put: bytes, tmp_path: Path
) -> None:
    """A presigned GET fetches the object with curl and a presigned PUT uploads one (SigV4);
    a presigned URL past its expiry is ``AccessDenied``; a tampered one
    ``SignatureDoesNotMatch``; botocore's default SigV2 presigned GET fetches it too."""
    bucket = f"pickup-{portal.tag}"
    # SigV4 presigning (botocore presigns with SigV2 unless told, for a custom endpoint)
    s3 = client(portal, *_s3(portal), signature_version="s3v4")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "dir/obj.bin"}, ExpiresIn=60
    )
    status, body = await asyncio.to_thread(_curl, portal, url)
    assert status == 200, body
    assert body == put
    source = tmp_path / "up.bin"
    source.write_bytes(b"presigned bytes")
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "pre/up.bin"}, ExpiresIn=60
    )
    status, body = await asyncio.to_thread(_curl, portal, put_url, "-T", str(source))
    assert status == 200, body
    await portal.listed(bucket, "pre/up.bin")
    short = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "dir/obj.bin"}, ExpiresIn=1
    )
    await asyncio.sleep(2.5)
    status, body = await asyncio.to_thread(_curl, portal, short)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
    assert b"expired" in body
    status, body = await asyncio.to_thread(_curl, portal, url.replace("dir/obj.bin", "dir/obj.bix"))
    assert b"<Code>SignatureDoesNotMatch</Code>" in body
    v2 = client(portal, *_s3(portal)).generate_presigned_url(  # botocore's default: SigV2
        "get_object", Params={"Bucket": bucket, "Key": "dir/obj.bin"}, ExpiresIn=60
    )
    assert "AWSAccessKeyId=" in v2
    status, body = await asyncio.to_thread(_curl, portal, v2)
    assert status == 200
    assert body == put


async def test_a_crc64nvme_trailer_is_checked(portal: PortalStack, s3: Any) -> None:
    """boto3 asked for CRC64NVME (its trailer, computed with awscrt) puts an object; the same
    request with that trailer changed on the way is ``BadDigest`` and registers nothing."""
    bucket = f"pickup-{portal.tag}"
    data = os.urandom(70_000)
    put = s3.put_object
    await asyncio.to_thread(
        put, Bucket=bucket, Key="crc64/good.bin", Body=data, ChecksumAlgorithm="CRC64NVME"
    )
    await portal.listed(bucket, "crc64/good.bin")

    def corrupt(request: Any, **_: Any) -> None:
        raw = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
        head, _, tail = raw.partition(b"x-amz-checksum-crc64nvme:")
        request.body = head + b"x-amz-checksum-crc64nvme:AAAAAAAAAAA=" + tail[tail.index(b"\r\n") :]

    bad = client(portal, *_s3(portal))
    bad.meta.events.register("before-send.s3.PutObject", corrupt)
    assert (
        code(lambda: bad.put_object(Bucket=bucket, Key="crc64/bad.bin", Body=data,
                                    ChecksumAlgorithm="CRC64NVME"))
        == "BadDigest"
    )  # fmt: skip
    await asyncio.sleep(1)
    assert not [e for e in portal.events(PortalUploaded) if e.path == "crc64/bad.bin"]


async def test_a_wrong_trailing_crc32_or_payload_digest_registers_nothing(
    portal: PortalStack, s3: Any
) -> None:
    """A body whose trailing CRC32 does not match (boto3's request with its trailer changed on
    the way) is ``BadDigest``; a body whose signed SHA-256 does not match is
    ``XAmzContentSHA256Mismatch``; neither registers anything."""
    bucket = f"pickup-{portal.tag}"

    def corrupt(request: Any, **_: Any) -> None:
        body = request.body
        raw = body.read() if hasattr(body, "read") else bytes(body)
        head, _, tail = raw.partition(b"x-amz-checksum-crc32:")
        request.body = head + b"x-amz-checksum-crc32:AAAAAA==" + tail[tail.index(b"\r\n") :]

    bad = client(portal, *_s3(portal))
    bad.meta.events.register("before-send.s3.PutObject", corrupt)
    assert (
        code(lambda: bad.put_object(Bucket=bucket, Key="bad/crc.bin", Body=b"y" * 5000))
        == "BadDigest"
    )
    signed = client(portal, *_s3(portal), s3={"payload_signing_enabled": True},
                    request_checksum_calculation="when_required")  # fmt: skip

    def swap(request: Any, **_: Any) -> None:
        request.body = b"z" * 5000

    signed.meta.events.register("before-send.s3.PutObject", swap)
    assert code(lambda: signed.put_object(Bucket=bucket, Key="bad/sha.bin", Body=b"y" * 5000)) == (
        "XAmzContentSHA256Mismatch"
    )
    await asyncio.sleep(1)
    assert not [e for e in portal.events(PortalUploaded) if e.path.startswith("bad/")]


def _s3(portal: PortalStack) -> tuple[str, str]:
    return f"s3-{portal.tag}", "s3-secret"


async def test_traversal_through_keys_is_refused(portal: PortalStack, s3: Any) -> None:
    """Keys that climb (``a/../../b``, ``../x``) or hide a NUL are refused, never resolved:
    nothing is read or written outside the bucket."""
    bucket = f"pickup-{portal.tag}"
    for key in ("a/../../other-" + portal.tag + "/copy.bin", "../x", "a/./b", "a//b"):
        assert code(lambda k=key: s3.put_object(Bucket=bucket, Key=k, Body=b"t")) in (  # type: ignore[misc]
            "InvalidArgument", "NoSuchKey",
        )  # fmt: skip
        assert code(lambda k=key: s3.get_object(Bucket=bucket, Key=k)) in (
            "InvalidArgument",
            "NoSuchKey",
        )  # type: ignore[misc]


async def test_quota_and_max_connections(
    portal: PortalStack, s3: Any, logins: dict[str, tuple[str, str]]
) -> None:
    """A user with one connection at most is ``SlowDown`` (503) while a GET of its runs; once
    its download quota is spent (by that GET), new requests are ``AccessDenied``."""
    one, bucket = client(portal, *logins["one"]), f"pickup-{portal.tag}"
    big = os.urandom(32 * 1024 * 1024)  # more than the sockets' buffers: the GET stays open
    await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="quota/big.bin", Body=big)
    await portal.listed(bucket, "quota/big.bin")
    held = await asyncio.to_thread(one.get_object, Bucket=bucket, Key="quota/big.bin")
    try:
        assert code(lambda: one.list_objects_v2(Bucket=bucket)) == "SlowDown"
    finally:
        assert await asyncio.to_thread(held["Body"].read) == big
        held["Body"].close()
    await asyncio.sleep(0.5)
    assert code(lambda: one.list_objects_v2(Bucket=bucket)) == "AccessDenied"


def _chunk_signed_put(portal: PortalStack, key: str, data: bytes, *, tamper: bool) -> Any:
    """A PUT in signed chunks (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, as the Java SDK and
    minio-go send it): the seed signed by botocore's SigV4 signer, each 64 KiB chunk's
    signature chained by AWS's documented formula; ``tamper`` changes a byte of the second
    chunk after it was signed."""
    login, secret = _s3(portal)
    url = f"https://127.0.0.1:{portal.s3_port}/pickup-{portal.tag}/{key}"
    sizes = [len(data[i : i + 65536]) for i in range(0, len(data), 65536)] + [0]
    framed = sum(len(f"{s:x};chunk-signature={'0' * 64}\r\n") + s + 2 for s in sizes)
    request = AWSRequest(method="PUT", url=url, headers={
        "X-Amz-Content-SHA256": STREAMING_SIGNED, "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)), "Content-Length": str(framed),
    })  # fmt: skip
    SigV4Auth(Credentials(login, secret), "s3", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    when = headers["X-Amz-Date"]
    scope = f"{when[:8]}/us-east-1/s3/aws4_request"
    key_ = signing_key(secret, when[:8], "us-east-1", "s3")
    previous = headers["Authorization"].rsplit("Signature=", 1)[1]
    body = b""
    for index, start in enumerate([*range(0, len(data), 65536), len(data)]):
        chunk = data[start : start + 65536]
        text = "\n".join([
            "AWS4-HMAC-SHA256-PAYLOAD", when, scope, previous,
            hashlib.sha256(b"").hexdigest(), hashlib.sha256(chunk).hexdigest(),
        ])  # fmt: skip
        previous = hmac.new(key_, text.encode(), hashlib.sha256).hexdigest()
        if tamper and index == 1:
            chunk = b"!" + chunk[1:]
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    verify = str(portal.root / "secrets" / "portal" / "tls" / "server.crt")
    return httpx.put(url, content=body, headers=headers, verify=verify, timeout=60)


async def test_signed_chunks_are_checked_as_they_stream(portal: PortalStack) -> None:
    """A PUT in signed chunks registers its bytes; the same PUT with one chunk changed after
    signing is ``SignatureDoesNotMatch`` and registers nothing."""
    data = os.urandom(200_000)
    good = await asyncio.to_thread(
        _chunk_signed_put, portal, "chunked/good.bin", data, tamper=False
    )
    assert good.status_code == 200, good.text
    await portal.listed(f"pickup-{portal.tag}", "chunked/good.bin")
    bad = await asyncio.to_thread(_chunk_signed_put, portal, "chunked/bad.bin", data, tamper=True)
    assert bad.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in bad.text
    await asyncio.sleep(1)
    assert not [e for e in portal.events(PortalUploaded) if e.path == "chunked/bad.bin"]
