"""HTTP/HTTPS transfer module (aiohttp client).

get streams a URL (``Range`` for resume). list reads HTML index pages (``a[href]`` links parsed
with the stdlib parser; nginx/Apache autoindex sizes and dates picked up beside each link;
``useHead=yes`` asks HEAD for them) or JSON catalogs (``parser=json`` with ``arrayPath``,
``nameField``, ``sizeField``, ``timeField``, ``typeField``). put uses PUT, or POST with
``usePost=yes`` (multipart with ``useMultipart=yes``, field ``filenameAttribute``).

Other options: ``headers`` (``K: V;K2: V2``), ``token`` (bearer), basic auth from user/password,
``maxRedirects`` (5), ``sslValidation`` (yes), ``cafile``, ``connectTimeOut`` (30s),
``streamTimeout`` (5m, longest silence while reading),
``listRecursive``, ``listMaxThreads`` (10), ``urldir`` (trailing slash on listed URLs: yes
for HTML, no for JSON), ``webdav``.

Rules kept:

- Plain HTTP has no rename, so a plain put goes straight to the final URL (``usetmp`` is
  ignored): it is atomic only on servers that spool the body to a temporary file and move it
  into place when complete (nginx's dav module, most upload endpoints). With ``webdav=yes``
  puts go to a temporary name then ``MOVE`` (Overwrite: T), and rename/delete/mkdir use
  MOVE/DELETE/MKCOL (delete sends DELETE in either mode). A put at an offset is refused.
- Status mapping: 401 AuthenticationFailed, 403 PermissionDenied, 404/410 NotFound (permanent);
  408, 429, 5xx, timeouts and resets retriable; other statuses a permanent ProtocolFailure.
  An untrusted TLS certificate is a permanent AuthenticationFailed (the server's identity).
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import aiohttp

from protocols.base import (
    DEFAULT_CHUNK,
    AuthenticationFailed,
    ByteStream,
    ConnectionLost,
    Entry,
    Location,
    NotFound,
    PermissionDenied,
    ProtocolFailure,
    ServerFailure,
    TransferError,
    TransferTimeout,
    put_target,
    select,
)

_INDEX_META = re.compile(
    r"(\d{1,2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2}(?::\d{2})?|\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?)"
    r"\s+(-|\d+(?:\.\d+)?[KMGT]?)"
)
_SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _seconds(value: str | None, default: float) -> float:
    match = _DURATION.match(value or "")
    if match is None:
        if value:
            raise ProtocolFailure(f"bad duration {value!r}")
        return default
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


# ``list`` is a method name below, so annotations there use this alias.
Entries = list[Entry]


def status_error(status: int, what: str) -> TransferError:
    """The project error for an HTTP status (permanent or retriable)."""
    message = f"{what}: HTTP {status}"
    if status == 401:
        return AuthenticationFailed(message)
    if status == 403:
        return PermissionDenied(message)
    if status in {404, 410}:
        return NotFound(message)
    if status in {408, 429} or status >= 500:
        return ServerFailure(message)
    return ProtocolFailure(message)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except TransferError:
        raise
    except aiohttp.ClientSSLError as exc:
        raise AuthenticationFailed(f"{what}: TLS: {exc}") from exc
    except aiohttp.TooManyRedirects as exc:
        raise ProtocolFailure(f"{what}: too many redirects") from exc
    except aiohttp.ClientResponseError as exc:
        raise status_error(exc.status, what) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise TransferTimeout(f"{what}: timed out") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ConnectionLost(f"{what}: {exc!r}") from exc


class _LinkParser(HTMLParser):
    """Collects ``a[href]`` links and the text that follows each (autoindex size/date)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._in_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append((href, ""))
                self._in_link = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_link = False

    def handle_data(self, data: str) -> None:
        if self.links and not self._in_link:
            href, after = self.links[-1]
            self.links[-1] = (href, after + data)


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    return _parse_text_time(str(value).strip())


@lru_cache(maxsize=4096)  # index pages repeat the same minute thousands of times
def _parse_text_time(text: str) -> datetime | None:
    for parse in (
        lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")),
        parsedate_to_datetime,
        lambda t: datetime.strptime(t, "%d-%b-%Y %H:%M"),
        lambda t: datetime.strptime(t, "%d-%b-%Y %H:%M:%S"),
        lambda t: datetime.strptime(t, "%Y-%m-%d %H:%M"),
        lambda t: datetime.strptime(t, "%Y-%m-%d %H:%M:%S"),
    ):
        with suppress(ValueError, TypeError):
            moment = parse(text)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _parse_size(text: str) -> int:
    if text == "-":
        return 0
    unit = _SIZE_UNITS.get(text[-1], 1)
    return int(float(text.rstrip("KMGT")) * unit)


def _headers(location: Location) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in (location.option("headers") or "").split(";"):
        name, sep, value = item.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    token = location.option("token")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _ssl(location: Location) -> ssl.SSLContext | bool:
    if not location.flag("sslValidation", True):
        return False
    cafile = location.option("cafile")
    return ssl.create_default_context(cafile=cafile) if cafile else True


class HttpModule:
    """Opens aiohttp sessions for ``http://`` and ``https://`` locations."""

    async def connect(self, location: Location) -> HttpConnection:
        connect_timeout = _seconds(location.option("connectTimeOut"), 30.0)
        # A stalled peer must not hold a transfer forever (ectrans.streamTimeout, 5m).
        read_timeout = _seconds(location.option("streamTimeout"), 300.0)
        auth = None
        if location.user and not location.option("token"):
            auth = aiohttp.BasicAuth(location.user, location.password or "")
        session = aiohttp.ClientSession(
            auth=auth,
            headers=_headers(location),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=connect_timeout, sock_read=read_timeout
            ),
            connector=aiohttp.TCPConnector(ssl=_ssl(location), limit=100),
            auto_decompress=False,  # bytes are moved as stored, never re-encoded
        )
        return HttpConnection(location, session)


class HttpConnection:
    """One aiohttp session (a keep-alive pool) for one base URL."""

    def __init__(self, location: Location, session: aiohttp.ClientSession) -> None:
        self.location = location
        self._session = session
        self._redirects = int(location.option("maxRedirects", "5") or 5)
        self._webdav = location.flag("webdav", False)
        self._dirs: set[str] = set()
        port = f":{location.port}" if location.port else ""
        self._origin = f"{location.scheme}://{location.host}{port}"

    @property
    def broken(self) -> bool:
        """Never, while open: aiohttp replaces dead keep-alive sockets by itself."""
        return self._session.closed

    def url(self, path: str, *, directory: bool = False) -> str:
        resolved = self.location.rooted(path)
        if directory and not resolved.endswith("/"):
            resolved += "/"
        return self._origin + quote(resolved)

    async def _request(
        self, method: str, url: str, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> aiohttp.ClientResponse:
        """Send a request; a status outside ``ok`` is released and translated."""
        response = await self._session.request(method, url, max_redirects=self._redirects, **kwargs)
        if response.status not in ok:
            response.release()
            raise status_error(response.status, what)
        return response

    # -- listing --------------------------------------------------------------------------------

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        deep = recursive or self.location.flag("listRecursive", False)
        limit = asyncio.Semaphore(int(self.location.option("listMaxThreads", "10") or 10))
        entries: list[Entry] = []
        level = [""]
        with _errors(f"list {path}"):
            while level:
                results = await _all(
                    [self._list_one(posixpath.join(path, rel), rel, limit) for rel in level]
                )
                level = []
                for found in results:
                    for entry in found:
                        entries.append(entry)
                        if deep and entry.is_dir:
                            level.append(entry.name)
        return select(entries, pattern, regex)

    async def _list_one(self, path: str, rel: str, limit: asyncio.Semaphore) -> Entries:
        # Index pages are directories (trailing slash, as servers redirect to it); a JSON
        # catalog is often a plain resource (``.../catalog.json``), so it is asked as given.
        as_dir = self.location.option("parser", "html") != "json"
        url = self.url(path, directory=self.location.flag("urldir", as_dir))
        async with limit:
            response = await self._request("GET", url, f"list {path}")
            async with response:
                body = await response.read()
                page = str(response.url)
        if self.location.option("parser", "html") == "json":
            found = self._from_json(json.loads(body))
        else:
            found = self._from_html(page, body.decode(response.charset or "utf-8", "replace"))
        if self.location.flag("useHead", False):
            found = list(await asyncio.gather(*(self._head(path, e, limit) for e in found)))
        return [
            Entry(posixpath.join(rel, e.name) if rel else e.name, e.size, e.mtime, e.is_dir)
            for e in found
        ]

    def _from_html(self, page: str, html: str) -> Entries:
        parser = _LinkParser()
        parser.feed(html)
        base = urlsplit(page)
        found: dict[str, Entry] = {}
        for href, after in parser.links:
            target = urlsplit(urljoin(page, href))
            # Only links strictly below this page: parents, siblings, other hosts and the
            # sort links of Apache (?C=N;O=D) are not entries.
            if (
                target.netloc != base.netloc
                or target.query
                or (target.fragment and not target.path)
            ):
                continue
            if not target.path.startswith(base.path) or target.path == base.path:
                continue
            name = unquote(target.path[len(base.path) :])
            is_dir = name.endswith("/")
            name = name.rstrip("/")
            if not name or "/" in name:
                continue
            meta = _INDEX_META.search(after.split("\n", 1)[0])
            size = 0 if is_dir or meta is None else _parse_size(meta.group(2))
            mtime = _parse_time(meta.group(1)) if meta else None
            found.setdefault(name, Entry(name, size, mtime, is_dir))
        return list(found.values())

    def _from_json(self, document: Any) -> Entries:
        items = document
        for key in filter(None, (self.location.option("arrayPath") or "").split(".")):
            items = items[int(key)] if isinstance(items, list) else items[key]
        if not isinstance(items, list):
            raise ProtocolFailure("JSON listing: arrayPath does not lead to an array")
        name_field = self.location.option("nameField") or "name"
        size_field = self.location.option("sizeField") or "size"
        time_field = self.location.option("timeField") or "mtime"
        type_field = self.location.option("typeField") or "type"
        found = []
        for item in items:
            name = str(item[name_field]) if isinstance(item, Mapping) else str(item)
            kind = item.get(type_field) if isinstance(item, Mapping) else None
            is_dir = name.endswith("/") or kind in {"dir", "directory", "folder"}
            size = item.get(size_field) if isinstance(item, Mapping) else None
            mtime = _parse_time(item.get(time_field)) if isinstance(item, Mapping) else None
            found.append(Entry(name.rstrip("/"), int(size or 0), mtime, is_dir))
        return found

    async def _head(self, path: str, entry: Entry, limit: asyncio.Semaphore) -> Entry:
        if entry.is_dir:
            return entry
        async with limit:
            response = await self._request(
                "HEAD", self.url(posixpath.join(path, entry.name)), "head"
            )
            response.release()
        length = response.headers.get("Content-Length")
        modified = _parse_time(response.headers.get("Last-Modified"))
        return Entry(entry.name, int(length) if length else entry.size, modified or entry.mtime)

    # -- bytes ---------------------------------------------------------------------------------

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        url = self.url(path)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with _errors(f"get {url}"):
            response = await self._request(
                "GET", url, f"get {path}", (200, 206, 416), headers=headers
            )
            async with response:
                if response.status == 416:
                    return  # offset at (or past) the end: nothing left to send
                skip = offset if response.status == 200 else 0  # server ignored Range
                async for chunk in response.content.iter_chunked(DEFAULT_CHUNK):
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    yield chunk

    async def put(
        self,
        path: str,
        data: AsyncIterable[bytes],
        *,
        use_tmp: bool | None = None,
        mkdirs: bool | None = None,
        offset: int = 0,
        temporary: str | None = None,
    ) -> int:
        if offset:
            raise ProtocolFailure("HTTP put cannot resume at an offset")
        target = self.location.rooted(path)
        parents = mkdirs if mkdirs is not None else self.location.flag("mkdirs", True)
        # A body stream cannot be replayed after a 409, so parents are made first; the
        # directories this connection made or saw are remembered to spare the MKCOLs.
        if self._webdav and parents and posixpath.dirname(target) not in self._dirs:
            await self.mkdir(posixpath.dirname(target), parents=True)
        tmp = self._webdav and (
            use_tmp if use_tmp is not None else self.location.flag("usetmp", True)
        )
        write_to = (
            put_target(target, self.location, temporary, self.location.rooted) if tmp else target
        )
        counted = _Counter(data)
        try:
            with _errors(f"put {target}"):
                await self._upload(write_to, counted)
                if write_to != target:
                    await self._move(write_to, target)
        except BaseException:
            self._dirs.clear()  # a parent may have vanished behind our back
            if write_to != target:
                with suppress(TransferError, aiohttp.ClientError, OSError):
                    await asyncio.shield(self.delete(write_to))
            raise
        return counted.count

    async def _upload(self, path: str, data: AsyncIterable[bytes]) -> None:
        url = self.url(path)
        body: Any = aiohttp.payload.AsyncIterablePayload(data)
        method = "PUT"
        if self.location.flag("usePost", False):
            method = "POST"
            url = self.location.option("uploadEndPoint") or url
            if self.location.flag("useMultipart", False):
                writer = aiohttp.MultipartWriter("form-data")
                part = writer.append_payload(body)
                part.set_content_disposition(
                    "form-data",
                    name=self.location.option("filenameAttribute") or "file",
                    filename=posixpath.basename(path),
                )
                body = writer
        response = await self._request(method, url, f"put {path}", (200, 201, 204), data=body)
        response.release()

    # -- names ---------------------------------------------------------------------------------

    def _need_webdav(self, what: str) -> None:
        if not self._webdav:
            raise ProtocolFailure(f"{what} needs webdav=yes on an HTTP location")

    async def _move(self, source: str, target: str) -> None:
        headers = {"Destination": self.url(target), "Overwrite": "T"}
        response = await self._request(
            "MOVE", self.url(source), f"move {source}", (200, 201, 204), headers=headers
        )
        response.release()

    async def rename(self, source: str, target: str) -> None:
        self._need_webdav("rename")
        with _errors(f"rename {source} -> {target}"):
            await self._move(source, target)
        self._dirs.clear()  # a moved collection takes its children with it

    async def delete(self, path: str) -> None:
        self._dirs.clear()
        with _errors(f"delete {path}"):
            response = await self._request(
                "DELETE", self.url(path), f"delete {path}", (200, 202, 204)
            )
            response.release()

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        self._need_webdav("mkdir")
        target = self.location.rooted(path)
        steps = [target]
        if parents:
            parts = [p for p in target.split("/") if p]
            steps = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
        with _errors(f"mkdir {target}"):
            for step in steps:
                if step in self._dirs:
                    continue
                # 405: the collection exists already, which is what mkdir wants.
                response = await self._request(
                    "MKCOL", self.url(step, directory=True), f"mkdir {step}", (200, 201, 405)
                )
                response.release()
                self._dirs.add(step)

    async def size(self, path: str) -> int:
        url = self.url(path)
        with _errors(f"size {url}"):
            response = await self._request("HEAD", url, f"size {path}")
            response.release()
            length = response.headers.get("Content-Length")
            if length is None:
                raise ProtocolFailure(f"size {path}: no Content-Length")
            return int(length)

    async def close(self) -> None:
        await self._session.close()


class _Counter:
    """Counts the bytes an upload body yields."""

    def __init__(self, data: AsyncIterable[bytes]) -> None:
        self._data = data
        self.count = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._data:
            self.count += len(chunk)
            yield chunk


async def _all(calls: list[Coroutine[Any, Any, list[Entry]]]) -> list[list[Entry]]:
    """Run listing calls together; the first failure cancels the rest and is raised as is."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
