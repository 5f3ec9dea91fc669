"""The ``az`` transfer module: Azure Blob Storage (and Azurite) through azure-storage-blob (aio).

Location: ``az://ACCOUNT:KEY@host:port/container/prefix``. Shared-key auth uses the login as
account name and the password as key; SAS uses the ``sasToken`` option (a token) or ``sasUrl``
(the account URL with its token). The endpoint is the ``url`` option, else
``https://ACCOUNT.blob.core.windows.net`` when the host is Azure's, else the path-style form
Azurite and Azure Stack use, ``SCHEME://host:port/ACCOUNT``. The first path segment is the
container unless ``containerName`` names it; directories are emulated by prefix (delimiter
``/`` for a non-recursive list). Options (OpenECPDS ``azure.*`` names): ``scheme`` (``https``),
``mkContainer``, ``blockSize`` (MiB, default 8), ``multipartSize`` (MiB, default =
``blockSize``: smaller blobs go in one PUT), ``numBuffers`` (5), ``useMD5`` (send Content-MD5
and store the blob's MD5), ``dirMarker``, ``listPageSize`` (5000), ``usetmp`` (no),
``retryCount``, ``retryFrequency``, ``connectTimeOut``.

Rules kept:
- ``usetmp`` defaults to False: a Put Blob is atomic and a staged-block upload is invisible
  until Put Block List commits it (uncommitted blocks are garbage-collected by the service), so
  a reader never sees a partial blob at the final name. When asked, the temporary blob is
  renamed by server-side copy + delete.
- A staged upload holds at most ``numBuffers`` block buffers (a semaphore slot is taken before
  a block is filled and given back once it is staged): peak memory ``numBuffers x blockSize``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from typing import Any, NoReturn

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobPrefix, ContentSettings
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

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
    select,
    temporary_name,
)

MIB = 1024 * 1024
# Azure answers a bad shared key or SAS signature with AuthenticationFailed; Azurite with
# AuthorizationFailure. A valid identity lacking a right gets AuthorizationPermissionMismatch
# (or another Authorization*Mismatch), which stays PermissionDenied.
AUTH_CODES = {"AuthenticationFailed", "AuthorizationFailure", "InvalidAuthenticationInfo"}
COPY_POLL = 0.2  # seconds between copy-status polls (same-account copies finish at once)


def translate(exc: BaseException, what: str) -> TransferError:
    """Map an azure-core error to the project's own (caller chains it with ``from``)."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        raw = getattr(exc, "error_code", None)
        code = str(getattr(raw, "value", raw) or exc.reason)
        text = f"{what}: {status} {code}"
        if code in AUTH_CODES or isinstance(exc, ClientAuthenticationError) or status == 401:
            return AuthenticationFailed(text)
        if isinstance(exc, ResourceNotFoundError):
            return NotFound(text)
        if status == 403:
            return PermissionDenied(text)
        if status == 404:
            return NotFound(text)
        if status >= 500 or status in {408, 429}:
            return ServerFailure(text)
        return ProtocolFailure(text)
    if isinstance(exc, asyncio.TimeoutError):
        return TransferTimeout(f"{what}: timed out")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, OSError)):
        return ConnectionLost(f"{what}: {exc}")
    if isinstance(exc, AzureError):
        return ServerFailure(f"{what}: {exc}")
    return ProtocolFailure(f"{what}: {exc!r}")


def fail(exc: BaseException, what: str, source: Chunker | None = None) -> NoReturn:
    """Raise the translated error; an error of the caller's own source stream passes as is."""
    if source is not None and exc is source.error:
        raise exc
    raise translate(exc, what) from exc


def mib_option(location: Location, name: str, default: float) -> int:
    raw = location.option(name)
    try:
        return max(1, int(float(raw) * MIB)) if raw else int(default * MIB)
    except ValueError as exc:
        raise ProtocolFailure(f"option {name}={raw!r} is not a number of MiB") from exc


def utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment else None


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


def endpoint(location: Location) -> str:
    """The account URL for the location (see the module docstring for the rules)."""
    url = location.option("url") or location.option("sasUrl")
    if url:
        return url
    scheme = location.option("scheme", "https") or "https"
    account = location.user or ""
    if not location.host or location.host.endswith(".core.windows.net"):
        host = location.host or f"{account}.blob.core.windows.net"
        return f"{scheme}://{host}"
    port = f":{location.port}" if location.port else ""
    return f"{scheme}://{location.host}{port}/{account}"


class AzureModule:
    """Opens ``AzureConnection`` objects; each owns one service client (one HTTP pool)."""

    async def connect(self, location: Location) -> AzureConnection:
        connection = AzureConnection(location)
        await connection.open()
        return connection


class AzureConnection:
    """A session to one storage account; paths resolve against container/prefix."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.block_size = mib_option(location, "blockSize", 8)
        self.multipart_size = min(
            mib_option(location, "multipartSize", 0) or self.block_size, self.block_size
        )
        self.buffers = max(1, int(location.option("numBuffers") or 5))
        self.use_md5 = location.flag("useMD5", False)
        credential: Any
        if location.option("sasToken"):
            credential = location.option("sasToken")
        elif location.option("sasUrl"):
            credential = None  # the token travels in the URL
        else:
            credential = {"account_name": location.user or "", "account_key": location.password}
        self._service = BlobServiceClient(
            endpoint(location),
            credential=credential,
            retry_total=int(location.option("retryCount") or 2),
            # The storage SDK's default first back-off is 15 s; the scheduler retries whole
            # transfers, so in-session retries stay short (OpenECPDS retryFrequency, 1 s).
            initial_backoff=float(location.option("retryFrequency") or 1),
            increment_base=2,
            connection_timeout=float(location.option("connectTimeOut") or 60),
            read_timeout=float(location.option("readTimeOut") or 300),
            max_single_put_size=self.multipart_size,
            # Downloads stream in 4 MiB ranges instead of buffering a 32 MiB first range.
            max_single_get_size=4 * MIB,
            max_chunk_get_size=4 * MIB,
        )

    async def open(self) -> None:
        if not self.location.flag("mkContainer", False):
            return
        container, _ = self.split(".")
        try:
            await self._service.create_container(container)
        except ResourceExistsError:
            pass
        except Exception as exc:
            await self._service.close()
            fail(exc, f"connect {self.location.url}")

    def split(self, path: str) -> tuple[str, str]:
        """``(container, blob name)`` for a path; raises if no container can be found."""
        resolved = self.location.resolve(path).lstrip("/")
        container = self.location.option("containerName")
        if not container:
            container, _, resolved = resolved.partition("/")
        if not container or container == ".":
            raise ProtocolFailure(f"{path!r}: no container in the path and no containerName")
        return container, "" if resolved == "." else resolved

    def _blob(self, path: str) -> BlobClient:
        container, name = self.split(path)
        return self._service.get_blob_client(container, name)

    def _container(self, path: str) -> tuple[ContainerClient, str]:
        container, name = self.split(path)
        return self._service.get_container_client(container), name

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        container, key = self._container(path)
        prefix = f"{key.rstrip('/')}/" if key else ""
        entries: list[Entry] = []
        page = int(self.location.option("listPageSize") or 5000)
        try:
            if recursive:
                items: Any = container.list_blobs(
                    name_starts_with=prefix or None, results_per_page=page
                )
            else:
                items = container.walk_blobs(
                    name_starts_with=prefix or None, delimiter="/", results_per_page=page
                )
            async for item in items:
                name = item.name[len(prefix) :]
                if not name:
                    continue  # the directory's own marker
                if isinstance(item, BlobPrefix) or name.endswith("/"):
                    entries.append(Entry(name=name.rstrip("/"), size=0, mtime=None, is_dir=True))
                else:
                    entries.append(Entry(name=name, size=item.size, mtime=utc(item.last_modified)))
        except Exception as exc:
            fail(exc, f"list {path}")
        return select(entries, pattern, regex)

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        blob = self._blob(path)
        try:
            downloader = await blob.download_blob(offset=offset or None)
        except HttpResponseError as exc:
            if getattr(exc, "error_code", None) == "InvalidRange":
                await self.size(path)  # resuming at the very end: nothing left to send
                return
            fail(exc, f"get {path}")
        except Exception as exc:
            fail(exc, f"get {path}")
        try:
            async for chunk in downloader.chunks():
                # The SDK's chunks follow max_chunk_get_size; re-cut to our usual block.
                for start in range(0, len(chunk), DEFAULT_CHUNK * 4):
                    yield chunk[start : start + DEFAULT_CHUNK * 4]
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
                f"put {path}: block blobs cannot be appended to (offset {offset})"
            )
        if use_tmp is None:
            use_tmp = self.location.flag("usetmp", False)
        target = temporary_name(path, self.location) if use_tmp else path
        written = await self._upload(self._blob(target), data, path)
        if use_tmp:
            try:
                await self.rename(target, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._blob(target).delete_blob())
                raise
        return written

    async def _upload(self, blob: BlobClient, data: AsyncIterable[bytes], path: str) -> int:
        chunker = Chunker(data)
        try:
            first = await chunker.next(self.multipart_size)
            if chunker.exhausted:
                md5 = hashlib.md5(first.getbuffer(), usedforsecurity=False).digest()
                settings = ContentSettings(content_md5=bytearray(md5)) if self.use_md5 else None
                await blob.upload_blob(
                    first,
                    length=chunker.last,
                    overwrite=True,
                    content_settings=settings,
                    validate_content=self.use_md5,
                )
                return chunker.total
        except Exception as exc:
            fail(exc, f"put {path}", chunker)
        chunker.unread(first)
        del first  # the staging loop owns the buffer now
        return await self._staged(blob, chunker, path)

    async def _staged(self, blob: BlobClient, chunker: Chunker, path: str) -> int:
        slots = asyncio.Semaphore(self.buffers)
        tasks: list[asyncio.Task[None]] = []
        block_ids: list[str] = []
        md5 = hashlib.md5(usedforsecurity=False)

        async def stage(block_id: str, body: io.BytesIO, length: int) -> None:
            try:
                await blob.stage_block(block_id, body, length=length, validate_content=self.use_md5)
            finally:
                slots.release()

        try:
            while True:
                await slots.acquire()
                body = await chunker.next(self.block_size)
                if not chunker.last and block_ids:
                    slots.release()
                    break
                if self.use_md5:
                    md5.update(body.getbuffer())
                # Block ids must all have the same length within a blob.
                block_id = base64.b64encode(f"{len(block_ids):08d}".encode()).decode()
                block_ids.append(block_id)
                tasks.append(asyncio.create_task(stage(block_id, body, chunker.last)))
                del body  # only the staging task may keep the buffer alive
                for task in tasks:
                    if task.done():
                        task.result()  # fail fast: a failed block stops the producer
                if chunker.exhausted:
                    break
            await asyncio.gather(*tasks)
            settings = (
                ContentSettings(content_md5=bytearray(md5.digest())) if self.use_md5 else None
            )
            await blob.commit_block_list(
                [BlobBlock(block_id=b) for b in block_ids], content_settings=settings
            )
        except BaseException as exc:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Uncommitted blocks never become visible; the service discards them.
            if not isinstance(exc, Exception):
                raise
            fail(exc, f"put {path}", chunker)
        return chunker.total

    async def rename(self, source: str, target: str) -> None:
        src, dst = self._blob(source), self._blob(target)
        try:
            copy = await dst.start_copy_from_url(src.url)
            status = copy.get("copy_status")
            while status == "pending":
                await asyncio.sleep(COPY_POLL)
                status = (await dst.get_blob_properties()).copy.status
            if status != "success":
                raise ServerFailure(f"rename {source} -> {target}: copy ended {status}")
            await src.delete_blob()
        except Exception as exc:
            fail(exc, f"rename {source} -> {target}")

    async def delete(self, path: str) -> None:
        try:
            try:
                await self._blob(path).delete_blob()
            except ResourceNotFoundError:
                # Maybe an (empty) directory: its marker blob, if mkdir made one.
                await self._blob(f"{path.rstrip('/')}/").delete_blob()
        except Exception as exc:
            fail(exc, f"delete {path}")

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        if not self.location.flag("dirMarker", False):
            return  # prefixes exist as soon as a blob is under them
        container, name = self.split(path)
        if not name:
            return
        try:
            marker = self._service.get_blob_client(container, f"{name.rstrip('/')}/")
            await marker.upload_blob(b"", overwrite=True)
        except Exception as exc:
            fail(exc, f"mkdir {path}")

    async def size(self, path: str) -> int:
        try:
            props = await self._blob(path).get_blob_properties()
        except Exception as exc:
            fail(exc, f"size {path}")
        return int(props.size)

    async def close(self) -> None:
        await self._service.close()
