"""SigV2 presigned URLs (``producers.portal.sigv2``) against botocore's own SigV2 presigner
(what boto3's ``generate_presigned_url`` and ``aws s3 presign`` use for an endpoint of one's
own): they verify until they expire, and a changed path, sub-resource or secret does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlsplit

import boto3
from botocore.auth import HmacV1Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from producers.portal.sigv2 import claim, verify
from producers.portal.sigv4 import Claim, Refusal, Request, Verified


def _presigned(method: str, params: dict[str, object], expires: int = 60) -> Request:
    client = boto3.client(
        "s3", endpoint_url="https://127.0.0.1:9443", aws_access_key_id="site-a",
        aws_secret_access_key=SECRET, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip
    url = urlsplit(client.generate_presigned_url(method, Params=params, ExpiresIn=expires))
    assert "AWSAccessKeyId=" in url.query  # botocore's default here: SigV2
    return Request("GET" if method == "get_object" else "PUT", url.path, url.query, {"host": "h"})


SECRET = "a-secret"


def _checked(request: Request, now: datetime, secret: str = SECRET) -> Verified | Refusal:
    found = claim(request)
    assert isinstance(found, Claim)
    assert found.access_key == "site-a"
    return verify(request, found, secret, now)


def test_a_sigv2_presigned_get_verifies_until_it_expires() -> None:
    """A GET presigned for 60 s (a key with a space and unicode) verifies within them and is
    ``AccessDenied`` after; another secret or another key is ``SignatureDoesNotMatch``."""
    request = _presigned("get_object", {"Bucket": "b", "Key": "a dir/été.bin"})
    now = datetime.now(UTC)
    assert isinstance(_checked(request, now), Verified)
    late = _checked(request, now + timedelta(seconds=90))
    assert isinstance(late, Refusal)
    assert late.code == "AccessDenied"
    wrong = _checked(request, now, secret="other")
    assert isinstance(wrong, Refusal)
    assert wrong.code == "SignatureDoesNotMatch"
    moved = Request(request.method, request.path + "x", request.query, request.headers)
    assert isinstance(_checked(moved, now), Refusal)


def test_signed_sub_resources_count_and_others_do_not() -> None:
    """An UploadPart URL signs its ``partNumber`` and ``uploadId``: another part number is
    refused; a PUT presigned as such verifies; not a SigV2 URL at all is None."""
    request = _presigned(
        "upload_part", {"Bucket": "b", "Key": "k", "UploadId": "u1", "PartNumber": 2}
    )
    now = datetime.now(UTC)
    assert isinstance(_checked(request, now), Verified)
    other = Request(
        request.method, request.path, request.query.replace("partNumber=2", "partNumber=3"),
        request.headers,
    )  # fmt: skip
    assert isinstance(_checked(other, now), Refusal)
    put = _presigned("put_object", {"Bucket": "b", "Key": "k"})
    assert isinstance(_checked(put, now), Verified)
    assert claim(Request("GET", "/b/k", "list-type=2", {"host": "h"})) is None


def _header_signed(
    method: str, url: str, secret: str = SECRET, headers: dict[str, str] | None = None
) -> Request:
    """A request signed as botocore's SigV2 header signer (``HmacV1Auth``) signs it."""
    sent = AWSRequest(method=method, url=url, headers=headers or {})
    HmacV1Auth(Credentials("site-a", secret)).add_auth(sent)
    parts = urlsplit(url)
    found = {name.lower(): str(value) for name, value in sent.headers.items()}
    return Request(method, parts.path, parts.query, found)


def test_a_sigv2_header_verifies_within_its_skew() -> None:
    """A GET and an UploadPart signed with ``Authorization: AWS key:signature`` (the second
    with an ``x-amz-date`` too) verify now and are ``RequestTimeTooSkewed`` 20 minutes
    on; another secret or another part number is ``SignatureDoesNotMatch``."""
    now = datetime.now(UTC)
    get = _header_signed("GET", "https://h/b/a%20dir/k.bin")
    assert isinstance(_checked(get, now), Verified)
    skewed = _checked(get, now + timedelta(minutes=20))
    assert isinstance(skewed, Refusal)
    assert skewed.code == "RequestTimeTooSkewed"
    wrong = _checked(_header_signed("GET", "https://h/b/k", secret="other"), now)
    assert isinstance(wrong, Refusal)
    assert wrong.code == "SignatureDoesNotMatch"
    stamped = {"x-amz-date": format_datetime(now, usegmt=True)}
    part = _header_signed("PUT", "https://h/b/k?partNumber=2&uploadId=u1", headers=stamped)
    assert isinstance(_checked(part, now), Verified)
    other = Request(part.method, part.path, "partNumber=3&uploadId=u1", part.headers)
    refused = _checked(other, now)
    assert isinstance(refused, Refusal)
    assert refused.code == "SignatureDoesNotMatch"
