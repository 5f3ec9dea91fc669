"""The WebDAV verbs of the portal's HTTPS door, the ones stock clients use (rclone's webdav
remote, davfs, cadaver, file managers): ``OPTIONS``, ``PROPFIND``, ``MKCOL``, ``MOVE``,
``DELETE`` (``GET``, ``HEAD`` and ``PUT`` are the door's own).

Rules kept here (RFC 4918, class 1, no locks): ``PROPFIND`` answers 207 with the live
properties of the resource and, at ``Depth: 1``, of its members (``infinity`` is answered as
``1``: a destination may hold 100,000 files); ``MKCOL`` makes a folder of the user's view (201;
405 when it exists); ``MOVE`` renames an upload in progress to its final name, which registers
it (201), within the same door only (a ``Destination`` on another host: 502); ``DELETE`` drops an
upload in progress (204). Every verb goes through the same session checks as SFTP's.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC
from email.utils import format_datetime
from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response

from producers.portal.access import PortalPath
from producers.portal.service import Entry, NotFound, Session

DAV = "DAV:"
ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, MKCOL, MOVE"
ET.register_namespace("D", DAV)


def options() -> Response:
    return Response(status_code=200, headers={"DAV": "1", "Allow": ALLOW, "MS-Author-Via": "DAV"})


def _href(path: PortalPath, folder: bool) -> str:
    text = "/" + "/".join(urllib.parse.quote(p) for p in path.parts)
    return text.rstrip("/") + "/" if folder else text


def _response(root: ET.Element, path: PortalPath, entry: Entry) -> None:
    node = ET.SubElement(root, f"{{{DAV}}}response")
    ET.SubElement(node, f"{{{DAV}}}href").text = _href(path, entry.folder)
    stat = ET.SubElement(node, f"{{{DAV}}}propstat")
    prop = ET.SubElement(stat, f"{{{DAV}}}prop")
    ET.SubElement(prop, f"{{{DAV}}}displayname").text = path.parts[-1] if path.parts else "/"
    kind = ET.SubElement(prop, f"{{{DAV}}}resourcetype")
    if entry.folder:
        ET.SubElement(kind, f"{{{DAV}}}collection")
    else:
        if entry.size is not None:
            ET.SubElement(prop, f"{{{DAV}}}getcontentlength").text = str(entry.size)
        ET.SubElement(prop, f"{{{DAV}}}getcontenttype").text = "application/octet-stream"
        item = entry.available
        if item is not None:
            tag = f'"{item.md5}"' if item.md5 else f'"{item.adler32 or "x"}-{item.size}"'
            ET.SubElement(prop, f"{{{DAV}}}getetag").text = tag
    if entry.mtime is not None:
        when = format_datetime(entry.mtime.astimezone(UTC), usegmt=True)
        ET.SubElement(prop, f"{{{DAV}}}getlastmodified").text = when
    ET.SubElement(stat, f"{{{DAV}}}status").text = "HTTP/1.1 200 OK"


async def propfind(session: Session, path: PortalPath, request: Request) -> Response:
    """207 with ``path``'s properties, and its members' at ``Depth: 1`` (the default)."""
    entry = await session.stat(path)
    root = ET.Element(f"{{{DAV}}}multistatus")
    _response(root, path, entry)
    if entry.folder and request.headers.get("depth", "1") != "0":
        for member in await session.list(path):
            _response(root, path.child(member.name), member)
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, status_code=207, media_type='application/xml; charset="utf-8"')


async def mkcol(session: Session, path: PortalPath) -> Response:
    if path.destination is not None and path.name:
        found = await _exists(session, path)
        if found:
            return Response(status_code=405, headers={"Allow": ALLOW})
    await session.mkdir(path)
    return Response(status_code=201)


async def _exists(session: Session, path: PortalPath) -> bool:
    try:
        await session.stat(path)
    except NotFound:
        return False
    return True


async def move(session: Session, path: PortalPath, request: Request) -> Response:
    target = request.headers.get("destination")
    if not target:
        return Response(b"a Destination header is required", status_code=400)
    parsed = urllib.parse.urlsplit(target)
    if parsed.netloc and parsed.netloc != request.url.netloc:
        return Response(b"moves stay within this portal", status_code=502)
    new = await session.resolve(urllib.parse.unquote(parsed.path))
    await session.rename(path, new)
    return Response(status_code=201)


async def delete(session: Session, path: PortalPath) -> Response:
    await session.remove(path)
    return Response(status_code=204)


__all__ = ["ALLOW", "delete", "mkcol", "move", "options", "propfind"]
