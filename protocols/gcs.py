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
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
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
    Location,
    ProtocolFailure,
    TransferError,
    TransferTimeout,
    from_bytes,
)
from protocols.objectstore import (
    Chunker,
    Listed,
    ObjectStoreConnection,
    ObjectStoreModule,
    host_url,
    mib_option,
    status_error,
)

SCOPES = ["https://www.googleapis.com/auth/devstorage.full_control"]
QUANTUM = 256 * 1024  # resumable chunks must be multiples of 256 KiB (all but the last)


def translate(exc: BaseException, what: str) -> TransferError:
    """Map an aiohttp/gcloud error to the project's own (caller chains it with ``from``)."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, aiohttp.ClientResponseError):
        return status_error(exc.status, f"{what}: {exc.status} {exc.message}"[:500])
    if isinstance(exc, asyncio.TimeoutError):
        return TransferTimeout(f"{what}: timed out")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return ConnectionLost(f"{what}: {exc}")
    return ProtocolFailure(f"{what}: {exc!r}")


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


class GcsConnection(ObjectStoreConnection):
    """A session to one GCS endpoint; paths resolve against bucket/prefix."""

    translate = staticmethod(translate)

    appended = "GCS objects"

    def __init__(self, location: Location) -> None:
        super().__init__(location)
        chunk = mib_option(location, "chunkSize", 8, minimum=0)
        self.chunk_size = max(QUANTUM, chunk - chunk % QUANTUM)
        # Smaller objects go in one media upload, larger ones through a resumable session.
        self.multipart_size = self.chunk_size
        self.timeout = float(location.option("timeOut") or 300)
        emulator_env = os.environ.get("STORAGE_EMULATOR_HOST")
        self.emulator = location.flag("emulator", bool(emulator_env))
        scheme = location.option("scheme", "http" if self.emulator else "https")
        if location.host:
            self.api_root = host_url(location, str(scheme))
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
                self.fail(exc, f"connect {loc.url}")

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

    def _object_url(self, bucket: str, name: str) -> str:
        return f"{self.api_root}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"

    async def _listing(self, bucket: str, prefix: str, recursive: bool) -> AsyncIterator[Listed]:
        params: dict[str, str] = {"prefix": prefix} if prefix else {}
        if not recursive:
            params["delimiter"] = "/"
        if self.location.option("listPageSize"):
            params["maxResults"] = str(self.location.option("listPageSize"))
        while True:
            page = await self.storage.list_objects(
                bucket, params=dict(params), headers=await self._headers(), timeout=60
            )
            for sub in page.get("prefixes", []):
                yield Listed(sub, is_dir=True)
            for item in page.get("items", []):
                yield Listed(
                    item["name"], int(item.get("size", 0)), parse_time(item.get("updated"))
                )
            token = page.get("nextPageToken")
            if not token:
                break
            params["pageToken"] = token

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
            self.fail(exc, f"get {path}")

    def _upload_url(self, bucket: str) -> str:
        return f"{self.api_root}/upload/storage/v1/b/{bucket}/o"

    async def _put_whole(self, bucket: str, name: str, body: io.BytesIO, length: int) -> None:
        if not length:
            # An empty object goes through a resumable session finalised by ``bytes */0``:
            # gcp-storage-emulator fails on an empty media upload (real GCS takes both).
            await self._put_marker(bucket, name)
            return
        headers = {**await self._headers(), "Content-Type": "application/octet-stream"}
        params = {"uploadType": "media", "name": name}
        async with self.session.post(
            self._upload_url(bucket), params=params, data=body, headers=headers
        ) as resp:
            await check(resp)

    async def _put_parts(self, bucket: str, name: str, chunker: Chunker) -> None:
        """A resumable session, cancelled on any failure so the service drops what it holds."""
        headers = {**await self._headers(), "Content-Type": "application/octet-stream"}
        params = {"uploadType": "resumable", "name": name}
        start = {**headers, "Content-Type": "application/json; charset=UTF-8"}
        start["X-Upload-Content-Type"] = "application/octet-stream"
        async with self.session.post(
            self._upload_url(bucket), params=params, data="{}", headers=start
        ) as resp:
            await check(resp)
            session_uri = resp.headers["Location"]
        try:
            await self._resumable(session_uri, chunker, headers)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.session.delete(session_uri, headers=headers))
            raise

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

    async def _put_marker(self, bucket: str, name: str) -> None:
        await self._put_parts(bucket, name, Chunker(from_bytes(b"")))

    async def _remove(self, bucket: str, name: str) -> None:
        await self.storage.delete(bucket, name)

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
            self.fail(exc, f"rename {source} -> {target}")

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
            self.fail(exc, f"delete {path}")

    async def size(self, path: str) -> int:
        bucket, name = self.split(path)
        try:
            meta = await self.storage.download_metadata(bucket, name, headers=await self._headers())
        except Exception as exc:
            self.fail(exc, f"size {path}")
        return int(meta.get("size", 0))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class GcsModule(ObjectStoreModule):
    """Opens ``GcsConnection`` objects; each owns one aiohttp session (one HTTP pool)."""

    opens = GcsConnection
