"""Requests signed with AWS Signature Version 2, verified: pure, no I/O, ``now`` passed in.
The S3 door takes presigned URLs because boto3's ``generate_presigned_url`` and ``aws s3
presign`` still presign with SigV2 for an endpoint of one's own (``AWSAccessKeyId``,
``Expires``, ``Signature`` in the query), and the ``Authorization: AWS <key>:<signature>``
header that older clients send (``s3cmd --signature-v2``, legacy SDKs).

Rules kept here (the S3 "REST authentication" of SigV2):

- The string to sign is the method, ``Content-MD5``, ``Content-Type``, a date line, the
  request's ``x-amz-*`` headers (lower-case, sorted, ``name:value``), then the path as sent
  with the sub-resources S3 signs (``uploadId``, ``partNumber``, ``response-*`` ...) sorted;
  the signature is the base64 HMAC-SHA1 of it with the secret. The date line is a URL's
  ``Expires`` epoch seconds; for the header form the ``Date`` header as sent, empty without
  one (as botocore and s3cmd sign; an ``x-amz-date`` is signed among the ``x-amz-*`` headers
  and, when present, is the request's time).
- A URL is good until ``Expires`` (then ``AccessDenied``, "Request has expired"), and at most
  seven days ahead. A header-signed request is good within ``SKEW`` of its date
  (``RequestTimeTooSkewed``), and one without a date is ``AccessDenied``.
- A verified request is handed to the door as SigV4's ``Verified`` of an ``UNSIGNED-PAYLOAD``
  claim (its body checked as such: Content-MD5 and checksum headers only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from producers.portal.sigv4 import (
    MAX_EXPIRES,
    SKEW,
    UNSIGNED,
    Claim,
    Refusal,
    Request,
    Verified,
    query_pairs,
)

# the sub-resources SigV2 signs (botocore's ``auth.QSAOfInterest``)
SIGNED_PARAMS = frozenset(
    [
        "accelerate",
        "acl",
        "cors",
        "defaultObjectAcl",
        "location",
        "logging",
        "partNumber",
        "policy",
        "requestPayment",
        "torrent",
        "versioning",
        "versionId",
        "versions",
        "website",
        "uploads",
        "uploadId",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "delete",
        "lifecycle",
        "tagging",
        "restore",
        "storageClass",
        "notification",
        "replication",
        "analytics",
        "metrics",
        "inventory",
        "select",
        "select-type",
        "object-lock",
        "legal-hold",
        "retention",
    ]
)


def signed_in_header(request: Request) -> bool:
    """Whether ``request`` is signed with a SigV2 ``Authorization`` header."""
    return request.headers.get("authorization", "").startswith("AWS ")


def claim(request: Request) -> Claim | Refusal | None:
    """A SigV2 request's claim: its header's, or its presigned URL's (None: neither)."""
    if signed_in_header(request):
        return _header_claim(request)
    params = dict(query_pairs(request.query))
    if not {"AWSAccessKeyId", "Signature", "Expires"} <= params.keys():
        return None
    try:
        expires = int(params["Expires"])
        until = datetime.fromtimestamp(expires, UTC)
    except (ValueError, OverflowError, OSError):
        return Refusal("AccessDenied", "malformed Expires", 403)
    return Claim(
        params["AWSAccessKeyId"], until.strftime("%Y%m%d"), "us-east-1", "s3", (),
        params["Signature"], until, str(expires), UNSIGNED, presigned=True, expires=None,
    )  # fmt: skip


def _header_claim(request: Request) -> Claim | Refusal:
    key, sep, signature = request.headers["authorization"][len("AWS ") :].strip().rpartition(":")
    if not sep or not key or not signature:
        return Refusal("AuthorizationHeaderMalformed", "AWS <access key>:<signature>", 400)
    headers = request.headers
    date_line = headers.get("date", "")
    try:
        when = parsedate_to_datetime(headers.get("x-amz-date") or headers["date"])
    except (KeyError, TypeError, ValueError):
        return Refusal("AccessDenied", "AWS authentication requires a valid Date", 403)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return Claim(
        key, when.strftime("%Y%m%d"), "us-east-1", "s3", (), signature, when, date_line,
        UNSIGNED, presigned=False, expires=None,
    )  # fmt: skip


def string_to_sign(request: Request, expires: str) -> str:
    headers = request.headers
    amz = sorted(
        (name, value.strip()) for name, value in headers.items() if name.startswith("x-amz-")
    )
    signed = sorted(
        (name, value) for name, value in query_pairs(request.query) if name in SIGNED_PARAMS
    )
    resource = request.path + (
        "?" + "&".join(f"{n}={v}" if v else n for n, v in signed) if signed else ""
    )
    lines = [
        request.method,
        headers.get("content-md5", ""),
        headers.get("content-type", ""),
        expires,
        *(f"{name}:{value}" for name, value in amz),
        resource,
    ]
    return "\n".join(lines)


def verify(request: Request, found: Claim, secret: str, now: datetime) -> Verified | Refusal:
    """Whether ``found`` (a SigV2 claim) is signed with ``secret``, in its time."""
    if not found.presigned:
        if abs(now - found.amz_date) > SKEW:
            return Refusal(
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
                403,
            )
    elif now > found.amz_date:
        return Refusal("AccessDenied", "Request has expired", 403)
    elif found.amz_date > now + timedelta(seconds=MAX_EXPIRES):
        return Refusal("AccessDenied", f"Expires is more than {MAX_EXPIRES} s ahead", 403)
    text = string_to_sign(request, found.amz_date_text)
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), found.signature):
        return Refusal(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
            403,
        )
    return Verified(found, b"")


__all__ = ["SIGNED_PARAMS", "claim", "signed_in_header", "string_to_sign", "verify"]
