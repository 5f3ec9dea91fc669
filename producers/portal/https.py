"""The portal's HTTPS door, on Starlette: the view of ``service.Session`` for browsers and
scripts (``curl``, ``wget``, rclone's http remote).

Rules kept here:

- Every request signs in: HTTP Basic (a data user's login and password, through the sign-in
  defender ``bus.signin``: a banned caller gets 429 with ``Retry-After``; a password checked
  once is remembered, as the ingest API does) or a portal API token (``Authorization:
  Bearer``; the token file ``<var>/secrets/portal-tokens``, one token per data user, named by
  its login; a ``viewer`` token only reads). Both are read by the ingest API's
  ``Authenticator``. No or wrong credentials: 401 with ``WWW-Authenticate: Basic``.
- A request is a portal session while it runs (a download until its last byte): past the
  user's max connections it is answered 429; a disabled or expired account, or a spent quota,
  403.
- A folder answers an HTML index (sortable by name, size, date; ``?sort=`` and ``?order=``) or,
  with ``Accept: application/json`` or ``?format=json``, a JSON listing; both paged by
  ``?limit=`` (default 1000) and ``?offset=``.
- A file answers its bytes with ``Content-Length``, ``Accept-Ranges``, ``ETag`` (its MD5, or
  ADLER32 and size), ``Last-Modified``; ``If-None-Match`` with its ETag: 304; one ``Range``
  (``a-b``, ``a-``, ``-n``): 206 with ``Content-Range``, 416 when it cannot be satisfied; several
  ranges are answered whole (200). Only a whole answer from the first byte can mark a held
  transfer DONE, and only once its last byte is sent.
- ``PUT`` uploads (201 with the registration; a temporary name is spooled until renamed); the
  WebDAV verbs stock clients use are ``producers.portal.webdav``'s. The
  status codes: 404 for what is not in the view (refused paths included), 403 for an operation
  not granted, 405 for what the view cannot do, 409 for a registration refused or failed.
- Security headers and ``no-store`` on every answer (``bus.web.SecureHeaders``).
"""

from __future__ import annotations

import asyncio
import html
import re
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from datetime import UTC
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bus.events.portal import AccessDeniedReason as Reason
from bus.signin import Banned, SignInGate
from bus.web import SecureHeaders
from producers.api.auth import Authenticator, TokenBook
from producers.portal import webdav
from producers.portal.access import Denied, Operation, PortalPath
from producers.portal.service import (
    Download,
    Entry,
    Failed,
    NotFound,
    Portal,
    PortalError,
    Refused,
    Session,
    TooLarge,
    Unsupported,
)

PROTOCOL = "https"
CHALLENGE = {"WWW-Authenticate": 'Basic realm="ecpds portal", charset="UTF-8"'}
CHUNK = 1024 * 1024  # bytes handed to the server at a time: the store's own chunk, served unsliced
PAGE = 1000
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _Answer(Exception):
    """A response to send instead of going on."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _answer(error: PortalError) -> Response:
    if isinstance(error, Refused):
        reason = error.denied.reason
        if reason is Reason.NOT_FOUND:
            return _text(404, error.denied.message)
        if reason is Reason.MAX_CONNECTIONS:
            return _text(429, error.denied.message, {"Retry-After": "5"})
        return _text(403, error.denied.message)
    if isinstance(error, NotFound):
        return _text(404, str(error))
    if isinstance(error, Unsupported):
        return _text(405, str(error))
    if isinstance(error, TooLarge):
        return _text(413, str(error))
    if isinstance(error, Failed):
        return _text(409, str(error))
    return _text(500, str(error))


class HttpsDoor:
    """The Starlette app of one portal."""

    def __init__(
        self, portal: Portal, gate: SignInGate, tokens: Path, key_file: Path | None
    ) -> None:
        self.portal = portal
        self.gate = gate
        self.auth = Authenticator(TokenBook(tokens), gate, key_file)
        methods = ["GET", "HEAD", "PUT", "OPTIONS", "PROPFIND", "MKCOL", "MOVE", "DELETE"]
        self.app = SecureHeaders(
            Starlette(routes=[Route("/{path:path}", self._serve, methods=methods)])
        )

    # -- sign-in ----------------------------------------------------------------------------

    async def _login(self, request: Request) -> tuple[str, bool]:
        """The data user of this request and whether it may write, or ``_Answer``. Basic and
        Bearer are read by the ingest API's authenticator (one home: the defender, the
        remembered passwords), on the portal's own token file."""
        address = request.client.host if request.client else None
        header = request.headers.get("authorization")
        principal = await self.auth.principal(header, self.portal.config.view, address)
        if isinstance(principal, Banned):
            raise _Answer(self._banned(principal))
        login = (principal.user or principal.name) if principal is not None else None
        if principal is None or login is None or self.portal.user(login) is None:
            raise _Answer(_text(401, "sign in (HTTP Basic or a portal token)", CHALLENGE))
        return login, principal.can_act

    @staticmethod
    def _banned(banned: Banned) -> Response:
        return _text(429, "too many failed sign-ins", {"Retry-After": str(banned.retry_after)})

    # -- requests ---------------------------------------------------------------------------

    async def _serve(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return webdav.options()
        try:
            login, writer = await self._login(request)
        except _Answer as answer:
            return answer.response
        address = request.client.host if request.client else None
        found = self.portal.start_session(login, PROTOCOL, address)
        if isinstance(found, Denied):
            return _answer(Refused(found))
        session = found
        handed_over = False
        try:
            path = await session.resolve(str(request.scope["path"]))
            method = request.method
            if method in ("PUT", "MKCOL", "MOVE", "DELETE") and not writer:
                return _text(403, "a viewer token only reads")
            if method == "PUT":
                return await self._put(session, path, request)
            if method == "PROPFIND":
                return await webdav.propfind(session, path, request)
            if method == "MKCOL":
                return await webdav.mkcol(session, path)
            if method == "MOVE":
                return await webdav.move(session, path, request)
            if method == "DELETE":
                return await webdav.delete(session, path)
            entry = await session.stat(path)
            if entry.folder:
                return await self._listing(session, path, request)
            response = await self._get(session, path, entry, request)
            handed_over = isinstance(response, StreamingResponse)
            return response
        except PortalError as error:
            return _answer(error)
        finally:
            if not handed_over:
                session.close()

    async def _listing(self, session: Session, path: PortalPath, request: Request) -> Response:
        params = request.query_params
        key = params.get("sort", "name")
        key = "mtime" if key == "date" else key if key in ("name", "size", "mtime") else "name"
        reverse = params.get("order", "asc") == "desc"
        try:
            limit = max(1, min(int(params.get("limit", PAGE)), 100_000))
            offset = max(0, int(params.get("offset", 0)))
        except ValueError:
            return _text(400, "limit and offset are whole numbers")
        total, page = await session.page(
            path, order=key, descending=reverse, limit=limit, offset=offset
        )
        accept = request.headers.get("accept", "")
        if params.get("format") == "json" or "application/json" in accept:
            body = {
                "path": str(path),
                "total": total,
                "offset": offset,
                "entries": [_json(e) for e in page],
            }
            return Response(orjson.dumps(body), media_type="application/json")
        return HTMLResponse(_html(str(path), page, total, offset, limit, key, reverse))

    async def _get(
        self, session: Session, path: PortalPath, entry: Entry, request: Request
    ) -> Response:
        item = entry.available
        if item is None:
            return _text(409, f"{path} is an upload in progress")
        tag = f'"{item.md5}"' if item.md5 else f'"{item.adler32 or "x"}-{item.size}"'
        headers = {"ETag": tag, "Accept-Ranges": "bytes"}
        if item.stored_at is not None:
            headers["Last-Modified"] = format_datetime(item.stored_at.astimezone(UTC), usegmt=True)
        match = request.headers.get("if-none-match")
        if match is not None and (
            match.strip() == "*" or tag in [m.strip() for m in match.split(",")]
        ):
            await session.check(Operation.GET, path)
            return Response(status_code=304, headers=headers)
        size = item.size
        start, end, status = 0, size - 1, 200
        wanted = request.headers.get("range")
        if wanted and "," not in wanted:
            found = span(wanted, size)
            if found is None:
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
                )
            start, end, status = found[0], found[1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1 if size else 0)
        if request.method == "HEAD":  # what a GET would answer, no bytes read or counted
            await session.check(Operation.GET, path)
            return Response(
                status_code=status, headers=headers, media_type="application/octet-stream"
            )
        download = await session.open_read(path, entry)
        return StreamingResponse(
            stream_bytes(download, session, start, end + 1),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )

    async def _put(self, session: Session, path: PortalPath, request: Request) -> Response:
        writer = await session.open_write(path)
        try:
            async for chunk in request.stream():
                if chunk:
                    await writer.write(writer.received, chunk)
        except ClientDisconnect:
            await writer.abort()
            return _text(400, "the upload was cut")
        except BaseException:
            await writer.abort()
            raise
        receipt = await writer.finish()
        if receipt is None:
            return JSONResponse(
                {"path": str(path), "size": writer.received, "staged": True}, status_code=201
            )
        return JSONResponse(
            {"path": str(path), "size": receipt.size, "data_file_id": receipt.data_file_id},
            status_code=201,
        )


async def stream_bytes(
    download: Download, session: Session, start: int, stop: int
) -> AsyncIterator[bytes]:
    """The bytes ``start``..``stop`` of ``download``; it ends (and is published) however the
    client goes."""
    try:
        offset = start
        while offset < stop:
            data = await download.read(offset, min(CHUNK, stop - offset))
            if not data:
                break
            offset += len(data)
            yield data
    finally:
        await asyncio.shield(_finish(download, session))


async def _finish(download: Download, session: Session) -> None:
    try:
        await download.close()
    finally:
        session.close()


def span(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte of one ``Range: bytes=a-b`` (``a-``, ``-n``) of ``size`` bytes,
    or None when it cannot be satisfied (or is not one range)."""
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last = found.group(1), found.group(2)
    if not first and not last:
        return None
    if not first:
        count = int(last)
        if count == 0 or size == 0:
            return None
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


def _json(entry: Entry) -> dict[str, Any]:
    found: dict[str, Any] = {"name": entry.name, "type": "folder" if entry.folder else "file"}
    if not entry.folder:
        found["size"] = entry.size
        found["mtime"] = entry.mtime.isoformat() if entry.mtime else None
        found["status"] = entry.available.status if entry.available else "ARRIVING"
    return found


def _size(size: int | None) -> str:
    if size is None:
        return ""
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(size)


def _html(
    path: str, page: Sequence[Entry], total: int, offset: int, limit: int, key: str, reverse: bool
) -> str:
    base = path.rstrip("/") + "/"

    def header(name: str, label: str) -> str:
        order = "desc" if key == name and not reverse else "asc"
        return f'<th><a href="?sort={name}&amp;order={order}">{label}</a></th>'

    rows = []
    if path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td><td></td></tr>')
    for entry in page:
        link = html.escape(base + urllib.parse.quote(entry.name) + ("/" if entry.folder else ""))
        name = html.escape(entry.name + ("/" if entry.folder else ""))
        when = entry.mtime.strftime("%Y-%m-%d %H:%M:%S UTC") if entry.mtime else ""
        status = "" if entry.folder else (entry.available.status if entry.available else "ARRIVING")
        rows.append(
            f'<tr><td><a href="{link}">{name}</a></td><td class="size">{_size(entry.size)}</td>'
            f"<td>{when}</td><td>{status}</td></tr>"
        )
    more = ""
    if offset + limit < total:
        query = f"sort={key}&amp;offset={offset + limit}&amp;limit={limit}"
        more = f'<p><a href="?{query}">next page</a></p>'
    title = html.escape(f"ecpds portal: {path}")
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{html.escape(path)}</h1><p>{total} entries</p><table><thead><tr>"
        f"{header('name', 'Name')}{header('size', 'Size')}{header('mtime', 'Date')}<th>Status</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</body></html>"
    )


__all__ = ["PROTOCOL", "HttpsDoor"]
