"""Presigned URLs signed with AWS Signature Version 2, verified: pure, no I/O, ``now`` passed
in. The S3 door takes them because boto3's ``generate_presigned_url`` and ``aws s3 presign``
still presign with SigV2 for an endpoint of one's own (``AWSAccessKeyId``, ``Expires``,
``Signature`` in the query).

Rules kept here (the S3 "REST authentication" of SigV2, query-string form):

- The string to sign is the method, ``Content-MD5``, ``Content-Type``, the ``Expires`` epoch
  seconds, the request's ``x-amz-*`` headers (lower-case, sorted, ``name:value``), then the
  path as sent with the sub-resources S3 signs (``uploadId``, ``partNumber``,
  ``response-*`` ...) sorted; the signature is the base64 HMAC-SHA1 of it with the secret.
- A URL is good until ``Expires`` (then ``AccessDenied``, "Request has expired"), and at most
  seven days ahead. Only the query form is taken: a SigV2 ``Authorization`` header is refused
  by ``sigv4.claim`` as not SigV4.
- A verified URL is handed to the door as SigV4's ``Verified`` of an ``UNSIGNED-PAYLOAD``
  presigned claim (its body checked as such: Content-MD5 and checksum headers only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from producers.portal.sigv4 import (
    MAX_EXPIRES,
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


def claim(request: Request) -> Claim | Refusal | None:
    """A SigV2 presigned URL's claim (None: the request is not one)."""
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
    """Whether ``found`` (a SigV2 presigned URL's claim) is signed with ``secret``, unexpired."""
    if now > found.amz_date:
        return Refusal("AccessDenied", "Request has expired", 403)
    if found.amz_date > now + timedelta(seconds=MAX_EXPIRES):
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


__all__ = ["SIGNED_PARAMS", "claim", "string_to_sign", "verify"]
