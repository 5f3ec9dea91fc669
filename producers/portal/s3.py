"""The portal's S3 door, on Starlette: each destination a data user may see is a bucket, its
files are objects, for stock S3 clients (boto3, the ``aws`` CLI, s3cmd, rclone, presigned URLs).

Rules kept here:

- Path-style addressing only (``https://host:port/<bucket>/<key>``). Every request is signed
  with SigV4 (``producers.portal.sigv4``), or is a URL presigned with SigV2
  (``producers.portal.sigv2``); anonymous requests are ``AccessDenied``. The access
  key is the data user's login, the secret its password, sealed for this door
  (``producers.portal.s3keys``). Failed signatures go through the sign-in defender
  (``bus.signin``, door ``s3``): a banned caller is ``AccessDenied`` unchecked.
- A request is a portal session while it runs (a GET until its last byte), as on the HTTPS
  door: past max connections it is ``SlowDown`` (503); refusals are published by the session.
- Operations map to the nine portal operations: ListBuckets, HeadBucket, GetBucketLocation,
  ListObjects (v1, v2) and ListMultipartUploads are ``dir``; HeadObject ``size``; GetObject
  ``get``; PutObject, CopyObject and UploadPartCopy (``get`` on the source) and the multipart
  set ``put``;
  DeleteObject(s) ``delete`` (only uploads in progress can be deleted, as on every door).
- A body is checked as it arrives (``producers.portal.s3body``) and an upload whose body
  fails any check is aborted before it is registered: nothing is left.
- ETag: the MD5 of the object (single-part), S3's ``<md5 of the parts' md5s>-<n>`` for what
  CompleteMultipartUpload answers. GET honours one ``Range`` and ``If-Match``,
  ``If-None-Match``, ``If-Modified-Since``, ``If-Unmodified-Since``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import UTC
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bus.defender import Attempt
from bus.signin import SignInGate
from bus.web import SecureHeaders
from producers.portal import s3list, s3xml, sigv2
from producers.portal.access import Denied, Operation, PortalPath
from producers.portal.errors import NotFound
from producers.portal.https import CHUNK, span, stream_bytes
from producers.portal.s3body import conditions, payload, small
from producers.portal.s3keys import S3Secrets
from producers.portal.s3parts import Multiparts, Pending
from producers.portal.s3xml import S3Error, tag, xml
from producers.portal.service import Entry, Portal, PortalError, Refused, Session
from producers.portal.sigv4 import (
    Refusal,
    SigV4Error,
    Verified,
    claim,
    query_pairs,
    verify,
)
from producers.portal.sigv4 import Request as Signed
from producers.portal.streams import Download, SpoolWriter, read_file

PROTOCOL = "s3"
REGION = "us-east-1"
EMPTY_MD5 = hashlib.md5(b"", usedforsecurity=False).hexdigest()
KEEP_ALIVE = 5.0  # seconds between the spaces a long CompleteMultipartUpload answers with


class S3Door:
    """The Starlette app of one portal's S3 API."""

    def __init__(
        self, portal: Portal, gate: SignInGate, secrets: S3Secrets, multipart: Path
    ) -> None:
        self.portal = portal
        self.gate = gate
        self.secrets = secrets
        self.multiparts = Multiparts(multipart, portal.clock())
        methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]
        self.app = SecureHeaders(
            Starlette(routes=[Route("/{path:path}", self._serve, methods=methods)])
        )

    # -- sign-in ----------------------------------------------------------------------------

    async def _signed_in(self, request: Request, signed: Signed) -> Verified:
        address = request.client.host if request.client else None
        found = claim(signed) if not sigv2.signed_in_header(signed) else None
        check = verify
        if found is None:  # boto3 and aws-cli presign with SigV2 for an endpoint of one's own
            found, check = sigv2.claim(signed), sigv2.verify
        if found is None:
            raise S3Error("AccessDenied", "anonymous requests are not served", 403)
        if isinstance(found, Refusal):
            self.gate.failed(address, None, Attempt.MALFORMED)
            raise S3Error(found.code, found.message, found.status)
        login = found.access_key
        if self.gate.banned(address, login) is not None:
            raise S3Error("AccessDenied", "too many failed sign-ins", 403)
        user = self.portal.user(login)
        secret = None
        if user is not None and user.active:
            secret = await self.secrets.secret(login, self.portal.password_hash(login))
        if secret is None:
            self.gate.failed(address, login, Attempt.TOKEN)
            raise S3Error("InvalidAccessKeyId", "no such access key (or no S3 secret)", 403)
        verified = check(signed, found, secret, self.portal.clock())
        if isinstance(verified, Refusal):
            attempt = (
                Attempt.PASSWORD if verified.code == "SignatureDoesNotMatch" else Attempt.MALFORMED
            )
            self.gate.failed(address, login, attempt)
            raise S3Error(verified.code, verified.message, verified.status)
        self.gate.succeeded(login)
        return verified

    # -- requests ---------------------------------------------------------------------------

    async def _serve(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        path_text = raw_path.decode("latin-1")
        query = request.scope.get("query_string", b"").decode("latin-1")
        headers: dict[str, str] = {}
        for name, value in request.scope["headers"]:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        signed = Signed(request.method, path_text, query, headers)
        head = request.method == "HEAD"
        # a body may be left unread by an answer that refuses it (a client waiting on
        # ``Expect: 100-continue`` does not send it): the connection cannot be reused then
        body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        resource = unquote(path_text)
        try:
            verified = await self._signed_in(request, signed)
        except S3Error as error:
            return s3xml.error_response(error, resource, head=head, close=body)
        address = request.client.host if request.client else None
        login = verified.claim.access_key
        found = self.portal.start_session(login, PROTOCOL, address)
        if isinstance(found, Denied):
            refused = s3xml.of_portal_error(Refused(found), bucket_seen=True, key=False)
            return s3xml.error_response(refused, resource, head=head, close=body)
        session = found
        handed_over = False
        bucket, _, key = resource.lstrip("/").partition("/")
        params = dict(query_pairs(query))
        try:
            response = await self._route(session, request, verified, bucket, key, params)
            handed_over = isinstance(response, StreamingResponse)
            return response
        except S3Error as error:
            return s3xml.error_response(error, resource, head=head, close=body)
        except SigV4Error as bad:
            refusal = bad.refusal
            return s3xml.error_response(
                S3Error(refusal.code, refusal.message, refusal.status),
                resource,
                head=head,
                close=body,
            )
        except PortalError as refused_here:
            seen = bucket in self._seen(session)
            mapped = s3xml.of_portal_error(refused_here, bucket_seen=seen, key=bool(key))
            return s3xml.error_response(mapped, resource, head=head, close=body)
        finally:
            if not handed_over:
                session.close()

    def _seen(self, session: Session) -> tuple[str, ...]:
        account = self.portal.account(session.login)
        return () if isinstance(account, Denied) else account.destinations

    async def _route(
        self,
        session: Session,
        request: Request,
        verified: Verified,
        bucket: str,
        key: str,
        params: dict[str, str],
    ) -> Response:
        method = request.method
        if not bucket:
            if method != "GET":
                raise S3Error("MethodNotAllowed", "only GET (ListBuckets) on /", 405)
            return await self._buckets(session)
        if not key:
            return await self._bucket(session, request, verified, bucket, params)
        path = await session.resolve(f"/{bucket}/{key}")
        if "uploadId" in params or (method == "POST" and "uploads" in params):
            return await self._multipart(session, request, verified, path, params)
        if method in ("GET", "HEAD"):
            return await self._get(session, request, path)
        if method == "PUT":
            if "x-amz-copy-source" in request.headers:
                return await self._copy(session, request, path)
            return await self._put(session, request, verified, path)
        if method == "DELETE":
            await self._delete(session, path)
            return Response(status_code=204)
        raise S3Error("MethodNotAllowed", f"{method} on an object", 405)

    # -- buckets ----------------------------------------------------------------------------

    async def _buckets(self, session: Session) -> Response:
        entries = await session.list(PortalPath(()))
        return xml(s3xml.buckets(session.login, [e.name for e in entries]))

    async def _bucket(
        self,
        session: Session,
        request: Request,
        verified: Verified,
        bucket: str,
        params: dict[str, str],
    ) -> Response:
        path = await session.resolve(f"/{bucket}")
        method = request.method
        if method == "PUT":  # CreateBucket: destinations are made by operators
            await session.check(Operation.DIR, path)
            raise S3Error("BucketAlreadyOwnedByYou", f"{bucket} is yours already", 409)
        if method == "POST" and "delete" in params:
            return await self._delete_many(session, request, verified, bucket)
        if method == "DELETE":
            await session.check(Operation.DIR, path)
            raise S3Error("AccessDenied", "destinations are not removed through the portal", 403)
        if method not in ("GET", "HEAD"):
            raise S3Error("MethodNotAllowed", f"{method} on a bucket", 405)
        await session.check(Operation.DIR, path)
        if method == "HEAD":
            return Response(status_code=200, headers={"x-amz-bucket-region": REGION})
        if "location" in params:
            return xml(f'<LocationConstraint xmlns="{s3xml.NS}"></LocationConstraint>')
        if "uploads" in params:
            return self._uploads(session, bucket, params)
        unsupported = {"acl", "policy", "versioning", "lifecycle", "tagging", "cors", "versions"}
        if unsupported & params.keys():
            raise S3Error("NotImplemented", "this bucket setting is not served", 501)
        return await self._list(session, bucket, params)

    async def _list(self, session: Session, bucket: str, params: dict[str, str]) -> Response:
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter", "")
        encode = params.get("encoding-type") == "url"
        try:
            most = max(0, min(int(params.get("max-keys", "1000")), 1000))
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys is a whole number", 400) from None
        objects, prefixes = await s3list.keys(session, bucket, prefix, delimiter)
        if params.get("list-type") == "2":
            token = params.get("continuation-token")
            after = params.get("start-after")
            start = s3list.key_of_token(token) if token else after or ""
            page = s3list.page(objects, prefixes, start, most)
            following = s3list.token_of(page.last) if page.truncated and page.last else None
            body = s3xml.list_v2(
                session.login, bucket, prefix, delimiter, most, page,
                token=token, after=after, next_token=following, encode=encode,
            )  # fmt: skip
            return xml(body)
        marker = params.get("marker", "")
        page = s3list.page(objects, prefixes, marker, most)
        return xml(
            s3xml.list_v1(session.login, bucket, prefix, delimiter, marker, most, page, encode)
        )

    def _uploads(self, session: Session, bucket: str, params: dict[str, str]) -> Response:
        prefix = params.get("prefix", "")
        found = self.multiparts.listing(session.login, bucket, prefix)
        return xml(s3xml.uploads(bucket, prefix, found))

    # -- objects ----------------------------------------------------------------------------

    async def _entry(self, session: Session, path: PortalPath, *, size: bool) -> Entry:
        if size:  # HeadObject tells a size; GetObject needs only ``get``
            await session.check(Operation.SIZE, path)
        entry = await session.stat(path)
        if entry.folder or entry.available is None:
            raise S3Error("NoSuchKey", f"{path}: no such key", 404)
        return entry

    async def _get(self, session: Session, request: Request, path: PortalPath) -> Response:
        head = request.method == "HEAD"
        if not head:
            await session.check(Operation.GET, path)
        entry = await self._entry(session, path, size=head)
        item = entry.available
        assert item is not None
        etag = s3list.etag_of(entry)
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if item.stored_at is not None:
            headers["Last-Modified"] = format_datetime(item.stored_at.astimezone(UTC), usegmt=True)
        status = conditions(request, etag, item.stored_at)
        if status is not None:
            if status == 304:
                return Response(status_code=304, headers=headers)
            raise S3Error("PreconditionFailed", "At least one of the preconditions failed", 412)
        size = item.size
        start, end, status = 0, size - 1, 200
        wanted = request.headers.get("range")
        if wanted:
            found = span(wanted, size)
            if found is None:
                raise S3Error("InvalidRange", "The requested range is not satisfiable", 416)
            start, end, status = found[0], found[1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1 if size else 0)
        if head:
            return Response(status_code=status, headers=headers)
        download = await session.open_read(path, entry)
        return StreamingResponse(
            stream_bytes(download, session, start, end + 1), status_code=status, headers=headers
        )

    async def _put(
        self, session: Session, request: Request, verified: Verified, path: PortalPath
    ) -> Response:
        if path.name.endswith("/") or request.scope["path"].endswith("/"):
            async for _ in payload(request, verified):
                raise S3Error("InvalidArgument", "a folder (key ending in /) has no bytes", 400)
            await session.mkdir(path)
            return Response(status_code=200, headers={"ETag": f'"{EMPTY_MD5}"'})
        etag = await self._write(session, path, payload(request, verified))
        return Response(status_code=200, headers={"ETag": etag})

    async def _write(self, session: Session, path: PortalPath, body: AsyncIterable[bytes]) -> str:
        """Stream ``body`` to ``path`` through the session's upload path; its MD5 ETag (the
        ingest service's, which hashes the bytes it stores anyway; computed here only for an
        upload spooled under a temporary name)."""
        writer = await session.open_write(path)
        digest = hashlib.md5(usedforsecurity=False) if isinstance(writer, SpoolWriter) else None
        try:
            async for chunk in body:
                if digest is not None:
                    digest.update(chunk)
                await writer.write(writer.received, chunk)
        except BaseException:
            await writer.abort()
            raise
        receipt = await writer.finish()
        if receipt is None:
            assert digest is not None
            return f'"{digest.hexdigest()}"'
        if receipt.checksums.md5:
            return f'"{receipt.checksums.md5}"'
        return f'"{receipt.checksums.adler32}-{receipt.size}"'  # as listings show it then

    async def _copy(self, session: Session, request: Request, path: PortalPath) -> Response:
        download = await self._source(session, request)
        try:
            etag = await self._write(session, path, _bytes_of(download, 0, download.item.size))
        finally:
            await download.close()
        now = s3xml.iso(self.portal.clock())
        return xml(
            f"<CopyObjectResult>{tag('LastModified', now)}{tag('ETag', etag)}</CopyObjectResult>"
        )

    async def _source(self, session: Session, request: Request) -> Download:
        """A download of what ``x-amz-copy-source`` names (``get`` on it)."""
        source = unquote(request.headers["x-amz-copy-source"].split("?", 1)[0])
        origin = await session.resolve("/" + source.lstrip("/"))
        if origin.destination is None or not origin.name:
            raise S3Error("InvalidArgument", "x-amz-copy-source names no object", 400)
        return await session.open_read(origin)

    async def _delete(self, session: Session, path: PortalPath) -> None:
        try:
            await session.remove(path)
        except NotFound:
            return  # S3 answers 204 for a key that is not there

    async def _delete_many(
        self, session: Session, request: Request, verified: Verified, bucket: str
    ) -> Response:
        body = await small(request, verified)
        keys, quiet = s3xml.deleted_keys(body)
        out = []
        for key in keys:
            try:
                await self._delete(session, await session.resolve(f"/{bucket}/{key}"))
                if not quiet:
                    out.append(f"<Deleted>{tag('Key', key)}</Deleted>")
            except PortalError as error:
                mapped = s3xml.of_portal_error(error, bucket_seen=True, key=True)
                out.append(
                    f"<Error>{tag('Key', key)}{tag('Code', mapped.code)}"
                    f"{tag('Message', mapped.message)}</Error>"
                )
        return xml(f'<DeleteResult xmlns="{s3xml.NS}">{"".join(out)}</DeleteResult>')

    # -- multipart --------------------------------------------------------------------------

    async def _multipart(
        self,
        session: Session,
        request: Request,
        verified: Verified,
        path: PortalPath,
        params: dict[str, str],
    ) -> Response:
        assert path.destination is not None
        method, bucket, key = request.method, path.destination, path.name
        if method == "POST" and "uploads" in params:
            await session.check(Operation.PUT, path)
            pending = self.multiparts.create(session.login, bucket, key, self.portal.clock())
            return xml(
                f'<InitiateMultipartUploadResult xmlns="{s3xml.NS}">{tag("Bucket", bucket)}'
                f"{tag('Key', key)}{tag('UploadId', pending.upload_id)}"
                "</InitiateMultipartUploadResult>"
            )
        pending = self.multiparts.find(params["uploadId"], session.login, bucket, key)
        if pending.completing and method in ("PUT", "DELETE", "POST"):
            raise S3Error("OperationAborted", "this upload is being completed", 409)
        if method == "PUT":
            await session.check(Operation.PUT, path)
            try:
                number = int(params.get("partNumber", ""))
            except ValueError:
                raise S3Error("InvalidArgument", "partNumber is a whole number", 400) from None
            if "x-amz-copy-source" in request.headers:
                return await self._copy_part(session, request, pending, number)
            part = await self.multiparts.put_part(
                pending, number, payload(request, verified), self.portal.clock()
            )
            return Response(status_code=200, headers={"ETag": f'"{part.etag}"'})
        if method == "DELETE":
            await session.check(Operation.PUT, path)
            self.multiparts.drop(pending)
            return Response(status_code=204)
        if method == "GET":
            await session.check(Operation.PUT, path)
            return xml(s3xml.parts(pending))
        if method == "POST":
            body = await small(request, verified)
            return await self._complete(session, path, pending, s3xml.completed_parts(body))
        raise S3Error("MethodNotAllowed", f"{method} on a multipart upload", 405)

    async def _copy_part(
        self, session: Session, request: Request, pending: Pending, number: int
    ) -> Response:
        """UploadPartCopy: a part made of (a range of) another object."""
        download = await self._source(session, request)
        try:
            size, wanted = download.item.size, request.headers.get("x-amz-copy-source-range")
            first, last = (0, size - 1) if wanted is None else span(wanted, size) or (-1, -1)
            if first < 0:
                raise S3Error("InvalidRange", "x-amz-copy-source-range is not satisfiable", 416)
            chunks = _bytes_of(download, first, last + 1)
            part = await self.multiparts.put_part(pending, number, chunks, self.portal.clock())
        finally:
            await download.close()
        return xml(
            f"<CopyPartResult>{tag('LastModified', s3xml.iso(part.mtime))}"
            f"{tag('ETag', chr(34) + part.etag + chr(34))}</CopyPartResult>"
        )

    async def _complete(
        self,
        session: Session,
        path: PortalPath,
        pending: Pending,
        listed: list[tuple[int, str]],
    ) -> Response:
        """Register the parts as one object, answering spaces while it runs (as S3 does, so
        a client's read timeout does not cut a long complete) and then the result, or the
        error in a 200 (which stock clients read as the error)."""
        await session.check(Operation.PUT, path)
        if pending.completing:  # another complete got here while this one read its body
            raise S3Error("OperationAborted", "this upload is being completed", 409)
        parts, etag = self.multiparts.chosen(pending, listed)
        pending.completing = True  # no await since the check: parts stay put from here

        async def body() -> AsyncIterator[bytes]:
            for part in parts:
                async for chunk in read_file(part.path):
                    yield chunk

        async def register() -> None:
            try:
                await self._write(session, path, body())
            finally:
                pending.completing = False
            self.multiparts.drop(pending)

        work = asyncio.ensure_future(register())
        done, _ = await asyncio.wait({work}, timeout=KEEP_ALIVE)
        if done:
            work.result()  # its error answers with its own status
            return xml(s3xml.completed(pending, etag))
        answer = keep_alive(work, lambda: s3xml.completed(pending, etag))
        return StreamingResponse(_closing(answer, session), media_type="application/xml")


async def keep_alive(
    work: asyncio.Future[None], result: Callable[[], str], period: float = KEEP_ALIVE
) -> AsyncIterator[bytes]:
    """A 200 answer to a long operation, as S3 streams it: the XML declaration at once, a
    space every ``period`` s while ``work`` runs, then ``result()`` or, if ``work`` failed,
    its ``<Error>`` (which stock clients read as the error it is)."""
    yield s3xml.HEAD.encode()
    while True:
        done, _ = await asyncio.wait({work}, timeout=period)
        if done:
            break
        yield b" "
    try:
        work.result()
    except S3Error as error:
        yield _error_tail(error)
        return
    except PortalError as failed:
        yield _error_tail(s3xml.of_portal_error(failed, bucket_seen=True, key=True))
        return
    yield result().encode()


async def _closing(pieces: AsyncIterator[bytes], session: Session) -> AsyncIterator[bytes]:
    """``pieces``, then the session closed however the client goes."""
    try:
        async for piece in pieces:
            yield piece
    finally:
        session.close()


async def _bytes_of(download: Download, start: int, stop: int) -> AsyncIterator[bytes]:
    offset = start
    while offset < stop and (chunk := await download.read(offset, min(CHUNK, stop - offset))):
        offset += len(chunk)
        yield chunk


def _error_tail(error: S3Error) -> bytes:
    return f"<Error>{tag('Code', error.code)}{tag('Message', error.message)}</Error>".encode()


__all__ = ["PROTOCOL", "REGION", "S3Door", "keep_alive"]
