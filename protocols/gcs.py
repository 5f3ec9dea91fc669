"""The ``gs`` transfer module: Google Cloud Storage (and its emulators) via gcloud-aio-storage.

Location: ``gs://host:port/bucket/prefix``. Auth is a service account, from the
``serviceAccountFile`` option (a path) or its JSON given as the password; with ``emulator=yes``
(or ``STORAGE_EMULATOR_HOST`` set, as Google's clients do) no token is sent and the endpoint is
the Location's host:port (``scheme`` default ``http``). Without a host the endpoint is Google's.
The first path segment is the bucket unless ``bucketName`` names it; directories are emulated
by prefix (delimiter ``/`` for a non-recursive list). Options (OpenECPDS ``gcs.*`` names):
``mkBucket``, ``projectId`` (for ``mkBucket``), ``chunkSize`` (MiB, default 8, rounded down to a
multiple of 256 KiB), ``dirMarker``, ``listPageSize``, ``usetmp`` (no), ``timeOut`` (seconds
per request).

gcloud-aio-storage lists, copies (rewrite), deletes and reads metadata; its upload and download
take whole buffers, so the byte streams use the same aiohttp session directly on the JSON API:
downloads are streamed with ``Range`` for offsets, uploads of a ``chunkSize`` or more use a
resumable session fed one chunk at a time (``Content-Range: bytes a-b/*``, the total sent with
the last chunk), smaller ones a single media upload.

Rules kept:
- ``usetmp`` defaults to False: a GCS object becomes visible only when its upload completes (a
  resumable session that never finishes creates nothing), so no reader sees a partial object at
  the final name. When asked, the temporary object is renamed by rewrite + delete.
- Peak memory of an upload is one chunk, whatever the object size.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import aiohttp
from gcloud.aio.auth import Token
from gcloud.aio.storage import Storage
from tenacity import stop_after_attempt

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
    from_bytes,
    select,
    temporary_name,
)

MIB = 1024 * 1024
SCOPES = ["https://www.googleapis.com/auth/devstorage.full_control"]
QUANTUM = 256 * 1024  # resumable chunks must be multiples of 256 KiB (all but the last)


def translate(exc: BaseException, what: str) -> TransferError:
    """Map an aiohttp/gcloud error to the project's own (caller chains it with ``from``)."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
        text = f"{what}: {status} {exc.message}"[:500]
        if status == 401:
            return AuthenticationFailed(text)
        if status == 403:
            return PermissionDenied(text)
        if status == 404:
            return NotFound(text)
        if status >= 500 or status in {408, 429}:
            return ServerFailure(text)
        return ProtocolFailure(text)
    if isinstance(exc, asyncio.TimeoutError):
        return TransferTimeout(f"{what}: timed out")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return ConnectionLost(f"{what}: {exc}")
    return ProtocolFailure(f"{what}: {exc!r}")


def fail(exc: BaseException, what: str, source: Chunker | None = None) -> NoReturn:
    """Raise the translated error; an error of the caller's own source stream passes as is."""
    if source is not None and exc is source.error:
        raise exc
    raise translate(exc, what) from exc


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


async def check(response: aiohttp.ClientResponse) -> None:
    """Raise ``ClientResponseError`` with the body's message for a failed response."""
    if response.status < 400:
        return
    body = await response.text()
    response.release()
    raise aiohttp.ClientResponseError(
        response.request_info, (), status=response.status, message=body[:300]
    )


class Chunker:
    """Cuts an async byte stream into in-memory buffers of a given size (shorter only at the end).

    Buffers are ``io.BytesIO``: chunks are copied once, straight into them, and aiohttp sends a
    BytesIO in 64 KiB slices where a bytes-like body would be copied whole (slice, header
    join, transport buffer). A buffer handed back with ``unread`` is continued by the next
    call, so a caller can look at the head of a stream without keeping a second reference to
    it alive (which would break the memory bound). ``last`` is the length of the last buffer.
    """

    def __init__(self, data: AsyncIterable[bytes]) -> None:
        self._iterator = aiter(data)
        self._carry = memoryview(b"")
        self._head: io.BytesIO | None = None
        self.exhausted = False
        self.error: BaseException | None = None
        self.total = 0
        self.last = 0

    def unread(self, buffer: io.BytesIO) -> None:
        self._head = buffer
        self.total -= self.last

    async def next(self, size: int) -> io.BytesIO:
        buffer = self._head if self._head is not None else io.BytesIO()
        self._head = None
        filled = buffer.seek(0, io.SEEK_END)
        if size > filled:
            # One jump to the full size makes BytesIO allocate exactly, not 12.5% more.
            buffer.seek(size - 1)
            buffer.write(b"\0")
            buffer.seek(filled)
        taken = self._carry[: max(0, size - filled)]
        filled += buffer.write(taken)
        self._carry = self._carry[len(taken) :]
        while filled < size and not self.exhausted:
            try:
                chunk = await anext(self._iterator)
            except StopAsyncIteration:
                self.exhausted = True
                break
            except BaseException as exc:
                self.error = exc  # the producer's failure, not the server's
                raise
            view = memoryview(chunk)
            written = buffer.write(view[: size - filled])
            filled += written
            self._carry = view[written:]
        buffer.truncate(filled)
        buffer.seek(0)
        self.last = filled
        self.total += filled
        return buffer


class OneShotToken(Token):
    """A service-account token whose fetch is tried once, not five times over up to minutes.

    gcloud-aio-auth retries every token failure with a random exponential back-off; a refused
    key should fail the transfer at once, and the scheduler owns retries of transient faults.
    """

    # The base method is tenacity-decorated; overriding it with a plain coroutine is the point.
    async def acquire_access_token(self, timeout: int = 10) -> None:  # type: ignore[override]
        once = Token.acquire_access_token.retry_with(stop=stop_after_attempt(1))
        await once(self, timeout)


def service_account(location: Location) -> io.StringIO | None:
    """The service-account JSON from ``serviceAccountFile`` or the password, checked here.

    gcloud-aio-auth silently falls back to the GCE metadata server when the JSON is unreadable,
    which would turn a typo into a retry loop; an unusable account is a permanent failure.
    """
    path = location.option("serviceAccountFile")
    try:
        text = Path(path).read_text(encoding="utf-8") if path else location.password
        if not text:
            return None  # application default credentials
        data = json.loads(text)
        if not isinstance(data, dict) or "type" not in data:
            raise ValueError("not a Google credentials JSON object")
    except (OSError, ValueError) as exc:
        raise AuthenticationFailed(f"service account unreadable: {exc}") from exc
    return io.StringIO(text)


class GcsModule:
    """Opens ``GcsConnection`` objects; each owns one aiohttp session (one HTTP pool)."""

    async def connect(self, location: Location) -> GcsConnection:
        connection = GcsConnection(location)
        await connection.open()
        return connection


class GcsConnection:
    """A session to one GCS endpoint; paths resolve against bucket/prefix."""

    def __init__(self, location: Location) -> None:
        self.location = location
        chunk = int(float(location.option("chunkSize") or 8) * MIB)
        self.chunk_size = max(QUANTUM, chunk - chunk % QUANTUM)
        self.timeout = float(location.option("timeOut") or 300)
        emulator_env = os.environ.get("STORAGE_EMULATOR_HOST")
        self.emulator = location.flag("emulator", bool(emulator_env))
        scheme = location.option("scheme", "http" if self.emulator else "https")
        if location.host:
            port = f":{location.port}" if location.port else ""
            self.api_root = f"{scheme}://{location.host}{port}"
        elif self.emulator and emulator_env:
            self.api_root = emulator_env if "://" in emulator_env else f"http://{emulator_env}"
        else:
            self.api_root = "https://storage.googleapis.com"
        self._session: aiohttp.ClientSession | None = None
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        assert self._storage is not None, "connection not open"
        return self._storage

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "connection not open"
        return self._session

    async def open(self) -> None:
        loc = self.location
        service_file = None if self.emulator else service_account(loc)
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=self.timeout)
        )
        try:
            token = (
                None
                if self.emulator
                else OneShotToken(
                    service_file=service_file,
                    session=session,  # type: ignore[arg-type]  # aiohttp build: Session is aiohttp's
                    scopes=SCOPES,
                )
            )
        except (ValueError, KeyError, OSError) as exc:
            await session.close()
            raise AuthenticationFailed(f"service account unreadable: {exc}") from exc
        self._session = session
        self._storage = Storage(
            token=token,
            service_file=service_file,
            session=self._session,  # type: ignore[arg-type]  # aiohttp build: Session is aiohttp's
            api_root=self.api_root,
            api_is_dev=self.emulator,
        )
        if loc.flag("mkBucket", False):
            try:
                await self._make_bucket(self.split(".")[0])
            except BaseException as exc:
                await self.close()
                if not isinstance(exc, Exception):
                    raise  # cancellation is not a transfer failure
                fail(exc, f"connect {loc.url}")

    async def _headers(self) -> dict[str, str]:
        if self.emulator:
            return {}
        try:
            token = await self.storage.token.get()
        except Exception as exc:
            error = translate(exc, "service account token")
            if error.retriable:
                raise error from exc
            # The token endpoint refused the account (4xx) or the key is unusable: permanent.
            raise AuthenticationFailed(f"service account token: {exc}") from exc
        return {"Authorization": f"Bearer {token}"}

    async def _make_bucket(self, bucket: str) -> None:
        params = {"project": self.location.option("projectId") or "ecpds"}
        url = f"{self.api_root}/storage/v1/b"
        body = json.dumps({"name": bucket})
        headers = {**await self._headers(), "Content-Type": "application/json"}
        async with self.session.post(url, params=params, data=body, headers=headers) as resp:
            if resp.status != 409:  # 409: the bucket exists already
                await check(resp)

    def split(self, path: str) -> tuple[str, str]:
        """``(bucket, object name)`` for a path; raises if no bucket can be found."""
        resolved = self.location.resolve(path).lstrip("/")
        bucket = self.location.option("bucketName")
        if not bucket:
            bucket, _, resolved = resolved.partition("/")
        if not bucket or bucket == ".":
            raise ProtocolFailure(f"{path!r}: no bucket in the path and no bucketName option")
        return bucket, "" if resolved == "." else resolved

    def _object_url(self, bucket: str, name: str) -> str:
        return f"{self.api_root}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        bucket, key = self.split(path)
        prefix = f"{key.rstrip('/')}/" if key else ""
        params: dict[str, str] = {"prefix": prefix} if prefix else {}
        if not recursive:
            params["delimiter"] = "/"
        if self.location.option("listPageSize"):
            params["maxResults"] = str(self.location.option("listPageSize"))
        entries: list[Entry] = []
        try:
            while True:
                page = await self.storage.list_objects(
                    bucket, params=dict(params), headers=await self._headers(), timeout=60
                )
                for sub in page.get("prefixes", []):
                    entries.append(
                        Entry(name=sub[len(prefix) :].rstrip("/"), size=0, mtime=None, is_dir=True)
                    )
                for item in page.get("items", []):
                    name = item["name"][len(prefix) :]
                    if not name:
                        continue  # the directory's own marker
                    is_dir = name.endswith("/")
                    entries.append(
                        Entry(
                            name=name.rstrip("/"),
                            size=0 if is_dir else int(item.get("size", 0)),
                            mtime=parse_time(item.get("updated")),
                            is_dir=is_dir,
                        )
                    )
                token = page.get("nextPageToken")
                if not token:
                    break
                params["pageToken"] = token
        except Exception as exc:
            fail(exc, f"list {path}")
        return select(entries, pattern, regex)

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        bucket, name = self.split(path)
        headers = await self._headers()
        if offset:
            headers["Range"] = f"bytes={offset}-"
        url = self._object_url(bucket, name)
        try:
            async with self.session.get(url, params={"alt": "media"}, headers=headers) as resp:
                if resp.status == 416:
                    await self.size(path)  # resuming at the very end: nothing left to send
                    return
                await check(resp)
                async for chunk in resp.content.iter_chunked(DEFAULT_CHUNK):
                    yield chunk
        except Exception as exc:
            fail(exc, f"get {path}")

    async def put(
        self,
        path: str,
        data: AsyncIterable[bytes],
        *,
        use_tmp: bool | None = None,
        mkdirs: bool | None = None,
        offset: int = 0,
    ) -> int:
        if offset:
            raise ProtocolFailure(
                f"put {path}: GCS objects cannot be appended to (offset {offset})"
            )
        if use_tmp is None:
            use_tmp = self.location.flag("usetmp", False)
        target = temporary_name(path, self.location) if use_tmp else path
        bucket, name = self.split(target)
        chunker = Chunker(data)
        try:
            written = await self._upload(bucket, name, chunker)
        except Exception as exc:
            fail(exc, f"put {path}", chunker)
        if use_tmp:
            try:
                await self.rename(target, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.storage.delete(bucket, name))
                raise
        return written

    async def _upload(self, bucket: str, name: str, chunker: Chunker) -> int:
        first = await chunker.next(self.chunk_size)
        url = f"{self.api_root}/upload/storage/v1/b/{bucket}/o"
        headers = {**await self._headers(), "Content-Type": "application/octet-stream"}
        # An empty object goes through a resumable session finalised by ``bytes */0``:
        # gcp-storage-emulator fails on an empty media upload (real GCS takes both).
        if chunker.exhausted and chunker.last:
            params = {"uploadType": "media", "name": name}
            async with self.session.post(url, params=params, data=first, headers=headers) as r:
                await check(r)
            return chunker.total
        chunker.unread(first)
        del first  # the chunk loop owns the buffer now
        params = {"uploadType": "resumable", "name": name}
        start = {**headers, "Content-Type": "application/json; charset=UTF-8"}
        start["X-Upload-Content-Type"] = "application/octet-stream"
        async with self.session.post(url, params=params, data="{}", headers=start) as resp:
            await check(resp)
            session_uri = resp.headers["Location"]
        try:
            await self._resumable(session_uri, chunker, headers)
        except BaseException:
            # Cancel the session so the service drops what it holds (nothing is visible).
            with contextlib.suppress(Exception):
                await asyncio.shield(self.session.delete(session_uri, headers=headers))
            raise
        return chunker.total

    async def _resumable(self, session_uri: str, chunker: Chunker, headers: dict[str, str]) -> None:
        """Send the chunks in order; the total travels with the last one (or alone if empty)."""
        sent = 0
        while True:
            body = await chunker.next(self.chunk_size)
            last = chunker.exhausted
            length = chunker.last
            total = str(sent + length) if last else "*"
            span = f"bytes {sent}-{sent + length - 1}/{total}" if length else f"bytes */{sent}"
            put_headers = {**headers, "Content-Range": span}
            data = body if length else b""  # aiohttp would send an empty stream chunked
            async with self.session.put(session_uri, data=data, headers=put_headers) as r:
                if r.status != 308:
                    await check(r)
                    if last or not length:
                        return
                    raise ProtocolFailure(f"resumable upload ended early ({r.status})")
            if last or not length:
                raise ProtocolFailure("resumable upload not finalised by the server")
            sent += length

    async def rename(self, source: str, target: str) -> None:
        src_bucket, src_name = self.split(source)
        dst_bucket, dst_name = self.split(target)
        try:
            headers = await self._headers()
            await self.storage.copy(
                src_bucket,
                src_name,
                dst_bucket,
                new_name=dst_name,
                headers=dict(headers),
                timeout=int(self.timeout),
            )
            await self.storage.delete(src_bucket, src_name, headers=dict(headers))
        except Exception as exc:
            fail(exc, f"rename {source} -> {target}")

    async def delete(self, path: str) -> None:
        bucket, name = self.split(path)
        try:
            try:
                await self.storage.delete(bucket, name, headers=await self._headers())
            except aiohttp.ClientResponseError as exc:
                if exc.status != 404:
                    raise
                # Maybe an (empty) directory: its marker object, if mkdir made one.
                marker = f"{name.rstrip('/')}/"
                await self.storage.delete(bucket, marker, headers=await self._headers())
        except Exception as exc:
            fail(exc, f"delete {path}")

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        if not self.location.flag("dirMarker", False):
            return  # prefixes exist as soon as an object is under them
        bucket, name = self.split(path)
        if not name:
            return
        try:
            await self._upload(bucket, f"{name.rstrip('/')}/", Chunker(from_bytes(b"")))
        except Exception as exc:
            fail(exc, f"mkdir {path}")

    async def size(self, path: str) -> int:
        bucket, name = self.split(path)
        try:
            meta = await self.storage.download_metadata(bucket, name, headers=await self._headers())
        except Exception as exc:
            fail(exc, f"size {path}")
        return int(meta.get("size", 0))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
