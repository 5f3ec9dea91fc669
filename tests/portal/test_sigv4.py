"""The pure SigV4 verifier (``producers.portal.sigv4``, ``producers.portal.awschunked``)
against botocore's own signer: requests signed by botocore (header-signed payloads,
``UNSIGNED-PAYLOAD``, presigned URLs, the aws-chunked body with a trailing CRC32 that boto3
sends by default) verify, and every tampered one is refused with its S3 error code; signed
chunks are checked against AWS's published example."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from producers.portal.awschunked import Checksum, ChunkDecoder
from producers.portal.sigv4 import (
    STREAMING_SIGNED,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED,
    Claim,
    Refusal,
    Request,
    SigV4Error,
    Verified,
    claim,
    verify,
)

ACCESS, SECRET = "site-a", "a-secret"
CREDENTIALS = Credentials(ACCESS, SECRET)


def _request(prepared: AWSRequest | Any, body: bytes = b"") -> Request:
    """What the door sees of a request botocore prepared: method, raw path and query, headers."""
    url = urlsplit(prepared.url)
    headers = {
        k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in prepared.headers.items()
    }
    headers.setdefault("host", url.netloc)
    return Request(prepared.method, url.path, url.query, headers)


def _signed(method: str, url: str, body: bytes, *, sign_payload: bool = True) -> Request:
    request = AWSRequest(method=method, url=url, data=body)
    request.context["client_config"] = Config(s3={"payload_signing_enabled": sign_payload})
    S3SigV4Auth(CREDENTIALS, "s3", "us-east-1").add_auth(request)
    return _request(request.prepare())


def _verified(
    request: Request, now: datetime | None = None, secret: str = SECRET
) -> Verified | Refusal:
    found = claim(request)
    assert isinstance(found, Claim), found
    assert found.access_key == ACCESS
    return verify(request, found, secret, now or datetime.now(UTC))


def test_a_header_signed_request_verifies_and_a_tampered_one_does_not() -> None:
    """A GET signed by botocore (key with spaces and unicode, a query) verifies; a changed path,
    query, signed header or secret is ``SignatureDoesNotMatch``."""
    url = "https://127.0.0.1:9000/bucket/a%20b/%C3%A9t%C3%A9.grib?list-type=2&prefix=a%2Fb&x="
    request = _signed("GET", url, b"")
    assert isinstance(_verified(request), Verified)
    for changed in (
        Request("GET", request.path + "x", request.query, request.headers),
        Request("GET", request.path, request.query + "&y=1", request.headers),
        Request("PUT", request.path, request.query, request.headers),
        Request("GET", request.path, request.query, {**request.headers, "host": "other:9000"}),
    ):
        refused = _verified(changed)
        assert isinstance(refused, Refusal)
        assert refused.code == "SignatureDoesNotMatch"
    wrong = _verified(request, secret="not-it")
    assert isinstance(wrong, Refusal)
    assert wrong.code == "SignatureDoesNotMatch"


def test_the_signed_payload_hash_is_claimed_for_the_door_to_check() -> None:
    """A PUT with its SHA-256 in ``x-amz-content-sha256`` verifies and claims that hash (the
    door checks the body against it); ``UNSIGNED-PAYLOAD`` is claimed as such."""
    body = b"some bytes"
    digest = hashlib.sha256(body).hexdigest()
    request = _signed("PUT", "https://127.0.0.1:9000/bucket/k", body)
    verified = _verified(request)
    assert isinstance(verified, Verified)
    assert verified.claim.payload == digest
    unsigned = _verified(
        _signed("PUT", "https://127.0.0.1:9000/bucket/k", body, sign_payload=False)
    )
    assert isinstance(unsigned, Verified)
    assert unsigned.claim.payload == UNSIGNED


def test_a_request_out_of_its_time_is_too_skewed() -> None:
    """A header-signed request more than 15 minutes from now is ``RequestTimeTooSkewed``."""
    request = _signed("GET", "https://127.0.0.1:9000/", b"")
    late = _verified(request, datetime.now(UTC) + timedelta(minutes=16))
    assert isinstance(late, Refusal)
    assert late.code == "RequestTimeTooSkewed"
    assert isinstance(_verified(request, datetime.now(UTC) + timedelta(minutes=14)), Verified)


def test_a_presigned_url_verifies_until_it_expires() -> None:
    """A URL presigned by botocore for 60 s verifies within them and is ``AccessDenied``
    after; a changed signature is ``SignatureDoesNotMatch``."""
    request = AWSRequest(method="GET", url="https://127.0.0.1:9000/bucket/dir/file.bin")
    S3SigV4QueryAuth(CREDENTIALS, "s3", "us-east-1", expires=60).add_auth(request)
    seen = _request(request.prepare())
    assert "authorization" not in seen.headers
    now = datetime.now(UTC)
    assert isinstance(_verified(seen, now + timedelta(seconds=30)), Verified)
    expired = _verified(seen, now + timedelta(seconds=90))
    assert isinstance(expired, Refusal)
    assert expired.code == "AccessDenied"
    assert "expired" in expired.message
    tampered = Request(
        "GET", seen.path, seen.query.replace("X-Amz-Signature=", "X-Amz-Signature=0"), seen.headers
    )
    refused = _verified(tampered)
    assert isinstance(refused, Refusal)
    assert refused.code == "SignatureDoesNotMatch"


def test_an_unsigned_request_claims_nothing_and_a_malformed_one_is_refused() -> None:
    """No ``Authorization`` and no presigned query: anonymous (None); a foreign scheme or a
    malformed credential is refused before any secret is looked up."""
    assert claim(Request("GET", "/", "", {"host": "h"})) is None
    basic = claim(Request("GET", "/", "", {"host": "h", "authorization": "Basic eDp5"}))
    assert isinstance(basic, Refusal)
    assert basic.code == "InvalidRequest"
    bad = "AWS4-HMAC-SHA256 Credential=x/y, SignedHeaders=host, Signature=00"
    malformed = claim(Request("GET", "/", "", {"host": "h", "authorization": bad}))
    assert isinstance(malformed, Refusal)
    assert malformed.code == "AuthorizationHeaderMalformed"


def _boto3_put(body: bytes) -> tuple[Request, bytes]:
    """The request boto3 (its defaults: CRC32 in a trailer over HTTPS) sends for a PutObject,
    caught before it leaves."""
    caught: dict[str, Any] = {}

    def catch(request: Any, **_: Any) -> Any:
        caught["request"] = request
        raise _Caught

    client = boto3.client(
        "s3",
        endpoint_url="https://127.0.0.1:9000",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    client.meta.events.register("before-send.s3.PutObject", catch)
    with pytest.raises(_Caught):
        client.put_object(Bucket="bucket", Key="dir/obj.bin", Body=io.BytesIO(body))
    prepared = caught["request"]
    raw = prepared.body
    sent = raw.read() if hasattr(raw, "read") else bytes(raw)
    return _request(prepared), sent


class _Caught(Exception):
    """Stops a boto3 call once its request is prepared."""


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_boto3s_default_put_decodes_with_its_trailing_crc32_checked(piece: int) -> None:
    """boto3's default PutObject (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``, CRC32 trailer)
    verifies; its body decodes to the object's bytes however it is cut on arrival."""
    body = bytes(range(256)) * 1000
    request, sent = _boto3_put(body)
    assert request.headers["x-amz-content-sha256"] == STREAMING_UNSIGNED_TRAILER
    assert request.headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    verified = _verified(request)
    assert isinstance(verified, Verified)
    decoder = ChunkDecoder(verified, trailer=[request.headers["x-amz-trailer"]])
    out = b"".join(b"".join(decoder.feed(p)) for p in _pieces(sent, piece))
    trailer = decoder.finish()
    assert out == body
    assert "x-amz-checksum-crc32" in trailer


def test_a_wrong_trailing_crc32_or_a_cut_body_is_refused() -> None:
    """A trailer whose CRC32 is not the bytes' is ``BadDigest``; a body cut before its last
    chunk is ``IncompleteBody``."""
    body = b"x" * 100_000
    request, sent = _boto3_put(body)
    verified = _verified(request)
    assert isinstance(verified, Verified)
    wrong = sent.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32:A")
    wrong = wrong.replace(b"A" + sent.split(b"x-amz-checksum-crc32:")[1][:8], b"AAAAAAAA")
    decoder = ChunkDecoder(verified, trailer=["x-amz-checksum-crc32"])
    decoder.feed(wrong)
    with pytest.raises(SigV4Error) as refused:
        decoder.finish()
    assert refused.value.refusal.code == "BadDigest"
    cut = ChunkDecoder(verified, trailer=["x-amz-checksum-crc32"])
    cut.feed(sent[: len(sent) // 2])
    with pytest.raises(SigV4Error) as incomplete:
        cut.finish()
    assert incomplete.value.refusal.code == "IncompleteBody"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("crc32", "DUoRhQ=="), ("crc32c", "yZRlqg=="), ("sha1", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
     ("sha256", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=")],
)  # fmt: skip
def test_each_checksum_is_s3s_base64_digest(name: str, expected: str) -> None:
    """CRC32, CRC32C, SHA1 and SHA256 of "hello world" are the base64 digests S3 documents."""
    checksum = Checksum(name)
    checksum.update(b"hello ")
    checksum.update(b"world")
    assert checksum.encoded() == expected


def test_crc64nvme_is_the_catalogued_crc() -> None:
    """CRC64NVME of "123456789" is CRC-64/NVME's catalogued check value, 0xAE8B14860A799888,
    sent as S3 sends it (base64 of the 8 big-endian bytes), however the bytes are fed."""
    checksum = Checksum("crc64nvme")
    for piece in (b"1234", b"5", b"6789"):
        checksum.update(piece)
    assert checksum.encoded() == base64.b64encode(bytes.fromhex("ae8b14860a799888")).decode()


# AWS's example of a payload in signed chunks ("Signature calculations for the Authorization
# header: transferring payload in multiple chunks", S3 API reference): 64 KiB then 1 KiB of "a"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
EXAMPLE_CHUNKS = (
    (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
)


def _example() -> tuple[Request, bytes]:
    headers = {
        "host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "authorization": (
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            f"x-amz-decoded-content-length;x-amz-storage-class,Signature={EXAMPLE_SEED}"
        ),
        "x-amz-content-sha256": STREAMING_SIGNED,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "content-length": "66824",
    }
    body = b"".join(
        f"{size:x};chunk-signature={sig}\r\n".encode() + b"a" * size + b"\r\n"
        for size, sig in EXAMPLE_CHUNKS
    )
    return Request("PUT", "/examplebucket/chunkObject.txt", "", headers), body


def test_signed_chunks_chain_from_the_seed_as_in_aws_example() -> None:
    """AWS's example verifies (seed, then each chunk's signature chained from the previous);
    a changed byte in a chunk, or a chunk signature of another chunk, is refused before any of
    that chunk's bytes are handed on."""
    request, body = _example()
    assert len(body) == 66824
    found = claim(request)
    assert isinstance(found, Claim)
    when = datetime(2013, 5, 24, tzinfo=UTC)
    verified = verify(request, found, EXAMPLE_SECRET, when)
    assert isinstance(verified, Verified), verified
    decoder = ChunkDecoder(verified)
    out = b"".join(b"".join(decoder.feed(p)) for p in _pieces(body, 1000))
    decoder.finish()
    assert out == b"a" * 66560
    tampered = bytearray(body)
    tampered[200] = ord("b")
    bad = ChunkDecoder(verified)
    with pytest.raises(SigV4Error) as refused:
        bad.feed(bytes(tampered))
    assert refused.value.refusal.code == "SignatureDoesNotMatch"
    swapped = body.replace(EXAMPLE_CHUNKS[1][1].encode(), EXAMPLE_CHUNKS[0][1].encode())
    second = ChunkDecoder(verified)
    first_chunk = len(f"10000;chunk-signature={EXAMPLE_CHUNKS[0][1]}\r\n") + 65536 + 2
    assert len(b"".join(second.feed(swapped[:first_chunk]))) == 65536
    with pytest.raises(SigV4Error):
        second.feed(swapped[first_chunk:])
