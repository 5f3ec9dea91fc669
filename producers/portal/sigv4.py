"""AWS Signature Version 4 verified on the server side: pure, no I/O, no clock (``now`` is
passed in), so the S3 door (``producers.portal.s3``) only feeds it what a request carries.

Rules kept here (the AWS "Signature Version 4 signing process" and its S3 forms):

- Two steps: ``claim`` reads what a request says about its signature (header
  ``Authorization: AWS4-HMAC-SHA256 ...`` or a presigned query with ``X-Amz-Signature``) without
  any secret; the door looks up the secret of the claimed access key, and ``verify`` checks it.
  A malformed claim, an unknown key (the door's), a stale date and a wrong signature are each
  their own S3 error code (``Refusal.code``).
- The canonical request is rebuilt from the request as sent: the path exactly as on the
  request line (S3 encodes it once, never normalised), the query re-encoded (RFC 3986 unreserved
  characters kept) and sorted, the signed headers lower-cased, trimmed, inner spaces folded.
- A header-signed request's ``X-Amz-Date`` (or ``Date``) must be within 15 minutes of ``now``
  (``RequestTimeTooSkewed``); a presigned URL is good from its date for ``X-Amz-Expires``
  seconds (1 to 604800) and refused after (``AccessDenied``, "Request has expired").
- The payload: ``x-amz-content-sha256`` names it. A hex SHA-256 is checked by the door once the
  body has arrived (``PayloadCheck``); ``UNSIGNED-PAYLOAD`` is not checked;
  ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` and ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` are
  aws-chunked bodies decoded by ``ChunkDecoder``: each chunk's signature chains from the
  previous one (the seed is the request's) and is checked before its bytes are handed on, and a
  trailing checksum (``x-amz-trailer``: CRC32, CRC32C, SHA1, SHA256) is checked against the
  bytes at the end (``Checksum``); both in ``producers.portal.awschunked``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER})
SKEW = timedelta(minutes=15)
MAX_EXPIRES = 604_800  # seven days, as S3
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SPACES = re.compile(r" +")
_CREDENTIAL = re.compile(r"([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request's signature is refused: the S3 error code, a message, the HTTP status."""

    code: str
    message: str
    status: int = 403


class SigV4Error(Exception):
    """A refusal raised while a body is decoded (a bad chunk, a wrong checksum)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class Request:
    """What a signature covers: the method, the path as sent (percent-encoded), the raw query
    string, and the headers (lower-case names; repeated ones joined with ``,``)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a request says about its signature, before any secret is known."""

    access_key: str
    date: str  # the credential scope's day, YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: datetime
    amz_date_text: str
    payload: str  # the hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* form
    presigned: bool = False
    expires: int | None = None

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature is right: who signed it, the key to check its chunks with."""

    claim: Claim
    signing_key: bytes = field(repr=False)


def _refuse(message: str, code: str = "AccessDenied", status: int = 403) -> Refusal:
    return Refusal(code, message, status)


def _amz_date(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The raw query string as decoded (name, value) pairs, in order (``a`` alone: ``a=``)."""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote(name.replace("+", " ")), unquote(value.replace("+", " "))))
    return pairs


def claim(request: Request) -> Claim | Refusal | None:
    """What ``request`` claims (None: not signed at all, an anonymous request)."""
    header = request.headers.get("authorization")
    params = dict(query_pairs(request.query))
    if header is not None:
        return _header_claim(request, header)
    if "X-Amz-Signature" in params or "X-Amz-Credential" in params:
        return _presigned_claim(params)
    return None


def _credential(text: str) -> tuple[str, str, str, str] | Refusal:
    found = _CREDENTIAL.fullmatch(text)
    if found is None:
        return _refuse(f"malformed credential {text[:120]!r}", "AuthorizationHeaderMalformed", 400)
    return found.group(1), found.group(2), found.group(3), found.group(4)


def _header_claim(request: Request, header: str) -> Claim | Refusal:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        return _refuse(f"unsupported authorization {algorithm[:40]!r}", "InvalidRequest", 400)
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        return _refuse(
            "Credential, SignedHeaders and Signature needed", "AuthorizationHeaderMalformed", 400
        )
    credential = _credential(fields["Credential"])
    if isinstance(credential, Refusal):
        return credential
    text = request.headers.get("x-amz-date")
    when = _amz_date(text) if text is not None else None
    if text is None and "date" in request.headers:
        try:
            when = parsedate_to_datetime(request.headers["date"]).astimezone(UTC)
            text = when.strftime("%Y%m%dT%H%M%SZ")
        except (TypeError, ValueError):
            when = None
    if when is None or text is None:
        return _refuse("X-Amz-Date or Date needed", "AccessDenied")
    payload = request.headers.get("x-amz-content-sha256")
    if payload is None:
        return _refuse("x-amz-content-sha256 needed", "InvalidRequest", 400)
    if payload not in STREAMING and payload != UNSIGNED and not _HEX64.fullmatch(payload):
        return _refuse("x-amz-content-sha256 is not a SHA-256", "InvalidArgument", 400)
    signed = tuple(fields["SignedHeaders"].split(";"))
    if "host" not in signed:
        return _refuse("host must be signed", "AccessDenied")
    return Claim(*credential, signed, fields["Signature"], when, text, payload)


def _presigned_claim(params: Mapping[str, str]) -> Claim | Refusal:
    needed = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders",
              "X-Amz-Signature", "X-Amz-Expires")  # fmt: skip
    missing = [n for n in needed if n not in params]
    if missing:
        return _refuse(
            f"presigned URL lacks {', '.join(missing)}", "AuthorizationQueryParametersError", 400
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        return _refuse("unsupported X-Amz-Algorithm", "AuthorizationQueryParametersError", 400)
    credential = _credential(params["X-Amz-Credential"])
    if isinstance(credential, Refusal):
        return credential
    when = _amz_date(params["X-Amz-Date"])
    if when is None:
        return _refuse("malformed X-Amz-Date", "AuthorizationQueryParametersError", 400)
    try:
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        expires = -1
    if not 1 <= expires <= MAX_EXPIRES:
        return _refuse(
            f"X-Amz-Expires must be 1 to {MAX_EXPIRES}", "AuthorizationQueryParametersError", 400
        )
    signed = tuple(params["X-Amz-SignedHeaders"].split(";"))
    return Claim(
        *credential, signed, params["X-Amz-Signature"], when, params["X-Amz-Date"], UNSIGNED,
        presigned=True, expires=expires,
    )  # fmt: skip


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The day's key derived from ``secret`` (the chain of HMACs)."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(query: str, *, drop: str | None = None) -> str:
    pairs = sorted((_encode(n), _encode(v)) for n, v in query_pairs(query) if n != drop)
    return "&".join(f"{n}={v}" for n, v in pairs)


def canonical_request(request: Request, found: Claim) -> str | Refusal:
    lines = []
    for name in found.signed_headers:
        value = request.headers.get(name)
        if value is None:
            return _refuse(f"signed header {name[:60]} missing", "AccessDenied")
        lines.append(f"{name}:{_SPACES.sub(' ', value.strip())}\n")
    query = canonical_query(request.query, drop="X-Amz-Signature" if found.presigned else None)
    return "\n".join(
        [
            request.method,
            request.path or "/",
            query,
            "".join(lines),
            ";".join(found.signed_headers),
            found.payload,
        ]
    )


def string_to_sign(found: Claim, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{found.amz_date_text}\n{found.scope}\n{digest}"


def verify(request: Request, found: Claim, secret: str, now: datetime) -> Verified | Refusal:
    """Whether ``found`` (claimed by ``request``) is signed with ``secret`` and is current."""
    if found.amz_date.strftime("%Y%m%d") != found.date:
        return _refuse("the credential's day is not the request's", "SignatureDoesNotMatch")
    if found.presigned:
        assert found.expires is not None
        if now > found.amz_date + timedelta(seconds=found.expires):
            return _refuse("Request has expired")
        if found.amz_date > now + SKEW:
            return _refuse("Request is not valid yet")
    elif abs(now - found.amz_date) > SKEW:
        return _refuse(
            "The difference between the request time and the current time is too large.",
            "RequestTimeTooSkewed",
        )
    canonical = canonical_request(request, found)
    if isinstance(canonical, Refusal):
        return canonical
    key = signing_key(secret, found.date, found.region, found.service)
    expected = hmac.new(key, string_to_sign(found, canonical).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, found.signature):
        return _refuse(
            "The request signature we calculated does not match the signature you provided.",
            "SignatureDoesNotMatch",
        )
    return Verified(found, key)


__all__ = [
    "EMPTY_SHA256",
    "MAX_EXPIRES",
    "STREAMING",
    "STREAMING_SIGNED",
    "STREAMING_SIGNED_TRAILER",
    "STREAMING_UNSIGNED_TRAILER",
    "UNSIGNED",
    "Claim",
    "Refusal",
    "Request",
    "SigV4Error",
    "Verified",
    "canonical_request",
    "claim",
    "query_pairs",
    "signing_key",
    "verify",
]
