"""What the S3 door says and reads in XML: its answers (S3's ``2006-03-01`` documents), its
errors (``<Error><Code>``, with S3's codes and statuses) and the bodies clients send
(``CompleteMultipartUpload``, ``Delete``). Pure: no I/O.

Rules kept here:

- Every portal refusal maps to one S3 error (``of_portal_error``): a destination not seen is
  ``NoSuchBucket``, a key not there ``NoSuchKey``, a path refused (``..``, control characters)
  ``InvalidArgument``, an operation not granted or an account refused ``AccessDenied``, max
  connections ``SlowDown`` (503, which stock clients retry), an upload over its cap
  ``EntityTooLarge``, what the view cannot do ``MethodNotAllowed``.
- A body a client sends is parsed only up to ``MAX_XML`` bytes, with the standard library's
  expat (no DTD, no external entities fetched).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from starlette.responses import Response

from bus.events.portal import AccessDeniedReason as Reason
from producers.portal.errors import (
    Failed,
    NotFound,
    PortalError,
    Refused,
    TooLarge,
    Unsupported,
)

if TYPE_CHECKING:  # s3parts raises this module's S3Error
    from producers.portal.s3parts import Pending

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML = 1024 * 1024
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True, slots=True)
class S3Error(Exception):
    """An S3 error answer: its code, message and HTTP status."""

    code: str
    message: str
    status: int = 400
    retry_after: int | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def error_response(
    error: S3Error, resource: str, *, head: bool = False, close: bool = False
) -> Response:
    """The ``<Error>`` document (no body for a HEAD, as S3); ``close`` ends the connection
    after it (a request body that may be left unread)."""
    request_id = uuid.uuid4().hex[:16].upper()
    headers = {"x-amz-request-id": request_id}
    if close:
        headers["Connection"] = "close"
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if head:
        return Response(status_code=error.status, headers=headers)
    body = (
        f"{HEAD}<Error><Code>{error.code}</Code><Message>{escape(error.message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    )
    return Response(body, status_code=error.status, headers=headers, media_type="application/xml")


def of_portal_error(error: PortalError, *, bucket_seen: bool, key: bool) -> S3Error:
    """The S3 error a portal refusal answers."""
    missing = "NoSuchKey" if key and bucket_seen else "NoSuchBucket"
    if isinstance(error, Refused):
        denied = error.denied
        if denied.reason is Reason.NOT_FOUND:
            if denied.operation is None:  # refused by ``confine``: a path that leaves the view
                return S3Error("InvalidArgument", denied.message, 400)
            return S3Error(missing, denied.message, 404)
        if denied.reason is Reason.MAX_CONNECTIONS:
            return S3Error("SlowDown", denied.message, 503, retry_after=5)
        return S3Error("AccessDenied", denied.message, 403)
    if isinstance(error, NotFound):
        return S3Error(missing, str(error), 404)
    if isinstance(error, TooLarge):
        return S3Error("EntityTooLarge", str(error), 400)
    if isinstance(error, Unsupported):
        return S3Error("MethodNotAllowed", str(error), 405)
    if isinstance(error, Failed):
        return S3Error("OperationAborted", str(error), 409)
    return S3Error("InternalError", str(error), 500)


def xml(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(HEAD + body, status_code=status, headers=headers, media_type="application/xml")


def iso(when: datetime | None) -> str:
    when = (when or datetime(2000, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def tag(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


# --- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listed:
    """One object of a listing."""

    key: str
    size: int
    mtime: datetime | None
    etag: str


def buckets(owner: str, names: Iterable[str]) -> str:
    items = "".join(
        f"<Bucket>{tag('Name', n)}{tag('CreationDate', iso(None))}</Bucket>" for n in names
    )
    who = tag("ID", owner) + tag("DisplayName", owner)
    return (
        f'<ListAllMyBucketsResult xmlns="{NS}"><Owner>{who}</Owner>'
        f"<Buckets>{items}</Buckets></ListAllMyBucketsResult>"
    )


def contents(owner: str, listed: Listed, encode: bool) -> str:
    return (
        f"<Contents>{tag('Key', _key(listed.key, encode))}"
        f"{tag('LastModified', iso(listed.mtime))}{tag('ETag', listed.etag)}"
        f"{tag('Size', listed.size)}<StorageClass>STANDARD</StorageClass>"
        f"<Owner>{tag('ID', owner)}{tag('DisplayName', owner)}</Owner></Contents>"
    )


def _key(key: str, encode: bool) -> str:
    from urllib.parse import quote

    return quote(key, safe="/") if encode else key


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: its objects and common prefixes, whether more follow."""

    objects: Sequence[Listed]
    prefixes: Sequence[str]
    truncated: bool
    last: str | None  # the last key or prefix of the page (where the next page starts)


def list_v1(
    owner: str, bucket: str, prefix: str, delimiter: str, marker: str, most: int, page: Page,
    encode: bool,
) -> str:  # fmt: skip
    body = [
        tag("Name", bucket), tag("Prefix", _key(prefix, encode)),
        tag("Marker", _key(marker, encode)),
        tag("MaxKeys", most), tag("IsTruncated", str(page.truncated).lower()),
    ]  # fmt: skip
    if delimiter:
        body.append(tag("Delimiter", delimiter))
    if page.truncated and page.last is not None:
        body.append(tag("NextMarker", _key(page.last, encode)))
    if encode:
        body.append(tag("EncodingType", "url"))
    body += [contents(owner, o, encode) for o in page.objects]
    body += [
        f"<CommonPrefixes>{tag('Prefix', _key(p, encode))}</CommonPrefixes>" for p in page.prefixes
    ]
    return f'<ListBucketResult xmlns="{NS}">{"".join(body)}</ListBucketResult>'


def list_v2(
    owner: str, bucket: str, prefix: str, delimiter: str, most: int, page: Page, *,
    token: str | None, after: str | None, next_token: str | None, encode: bool,
) -> str:  # fmt: skip
    body = [
        tag("Name", bucket), tag("Prefix", _key(prefix, encode)), tag("MaxKeys", most),
        tag("KeyCount", len(page.objects) + len(page.prefixes)),
        tag("IsTruncated", str(page.truncated).lower()),
    ]  # fmt: skip
    if delimiter:
        body.append(tag("Delimiter", delimiter))
    if token is not None:
        body.append(tag("ContinuationToken", token))
    if next_token is not None:
        body.append(tag("NextContinuationToken", next_token))
    if after is not None:
        body.append(tag("StartAfter", _key(after, encode)))
    if encode:
        body.append(tag("EncodingType", "url"))
    body += [contents(owner, o, encode) for o in page.objects]
    body += [
        f"<CommonPrefixes>{tag('Prefix', _key(p, encode))}</CommonPrefixes>" for p in page.prefixes
    ]
    return f'<ListBucketResult xmlns="{NS}">{"".join(body)}</ListBucketResult>'


def uploads(bucket: str, prefix: str, found: Sequence[Pending]) -> str:
    items = "".join(
        f"<Upload>{tag('Key', p.key)}{tag('UploadId', p.upload_id)}"
        f"<Initiator>{tag('ID', p.login)}</Initiator><Owner>{tag('ID', p.login)}</Owner>"
        f"<StorageClass>STANDARD</StorageClass>{tag('Initiated', iso(p.initiated))}</Upload>"
        for p in found
    )
    return (
        f'<ListMultipartUploadsResult xmlns="{NS}">{tag("Bucket", bucket)}'
        f"{tag('Prefix', prefix)}<IsTruncated>false</IsTruncated>{items}"
        "</ListMultipartUploadsResult>"
    )


def parts(pending: Pending) -> str:
    items = "".join(
        f"<Part>{tag('PartNumber', p.number)}{tag('LastModified', iso(p.mtime))}"
        f"{tag('ETag', chr(34) + p.etag + chr(34))}{tag('Size', p.size)}</Part>"
        for p in sorted(pending.parts.values(), key=lambda p: p.number)
    )
    return (
        f'<ListPartsResult xmlns="{NS}">{tag("Bucket", pending.bucket)}'
        f"{tag('Key', pending.key)}{tag('UploadId', pending.upload_id)}"
        f"<IsTruncated>false</IsTruncated>{items}</ListPartsResult>"
    )


def completed(pending: Pending, etag: str) -> str:
    return (
        f'<CompleteMultipartUploadResult xmlns="{NS}">'
        f"{tag('Location', f'/{pending.bucket}/{pending.key}')}{tag('Bucket', pending.bucket)}"
        f"{tag('Key', pending.key)}{tag('ETag', chr(34) + etag + chr(34))}"
        "</CompleteMultipartUploadResult>"
    )


# --- bodies clients send -----------------------------------------------------------------------


def _parse(body: bytes, root: str) -> ET.Element:
    if len(body) > MAX_XML:
        raise S3Error("MalformedXML", f"more than {MAX_XML} bytes", 400)
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML", "no DTD", 400)
    try:
        element = ET.fromstring(body)  # noqa: S314  (DTDs are refused above: no entities)
    except ET.ParseError as error:
        raise S3Error("MalformedXML", f"not XML: {error}", 400) from None
    if _local(element.tag) != root:
        raise S3Error("MalformedXML", f"expected <{root}>", 400)
    return element


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return (found[0].text or "") if found else None


def completed_parts(body: bytes) -> list[tuple[int, str]]:
    """The (part number, ETag) pairs of a ``CompleteMultipartUpload`` body, as listed."""
    root = _parse(body, "CompleteMultipartUpload")
    parts = []
    for part in _children(root, "Part"):
        number, etag = _text(part, "PartNumber"), _text(part, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise S3Error("MalformedXML", "a Part needs PartNumber and ETag", 400)
        parts.append((int(number), etag.strip().strip('"')))
    if not parts:
        raise S3Error("MalformedXML", "no parts", 400)
    return parts


def deleted_keys(body: bytes) -> tuple[list[str], bool]:
    """The keys of a ``Delete`` body and whether it asked to be quiet."""
    root = _parse(body, "Delete")
    keys = [k for o in _children(root, "Object") if (k := _text(o, "Key")) is not None]
    if len(keys) > 1000:
        raise S3Error("MalformedXML", "at most 1000 keys", 400)
    return keys, (_text(root, "Quiet") or "").strip().lower() == "true"


__all__ = [
    "MAX_XML",
    "NS",
    "Listed",
    "Page",
    "S3Error",
    "buckets",
    "completed",
    "completed_parts",
    "deleted_keys",
    "error_response",
    "iso",
    "list_v1",
    "list_v2",
    "of_portal_error",
    "parts",
    "tag",
    "uploads",
    "xml",
]
