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
- A staged upload holds at most ``numBuffers`` block buffers (``protocols.objectstore.send_parts``:
  a slot is taken before a block is filled and given back once it is staged): peak memory
  ``numBuffers x blockSize``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import AsyncIterator
from typing import Any

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
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from protocols.base import (
    DEFAULT_CHUNK,
    AuthenticationFailed,
    ByteStream,
    ConnectionLost,
    Location,
    NotFound,
    ProtocolFailure,
    ServerFailure,
    TransferError,
    TransferTimeout,
)
from protocols.objectstore import (
    MIB,
    Chunker,
    Listed,
    ObjectStoreConnection,
    ObjectStoreModule,
    host_url,
    mib_option,
    send_parts,
    status_error,
    utc,
)

# Azure answers a bad shared key or SAS signature with AuthenticationFailed; Azurite with
# AuthorizationFailure. A valid identity lacking a right gets AuthorizationPermissionMismatch
# (or another Authorization*Mismatch), which stays PermissionDenied.
AUTH_CODES = {"AuthenticationFailed", "AuthorizationFailure", "InvalidAuthenticationInfo"}
COPY_POLL = 0.2  # seconds between copy-status polls (same-account copies finish at once)
BYTE = 1 / MIB  # Azure takes sizes down to one byte, where the other stores want MiB


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
        return status_error(status, text)
    if isinstance(exc, asyncio.TimeoutError):
        return TransferTimeout(f"{what}: timed out")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, OSError)):
        return ConnectionLost(f"{what}: {exc}")
    if isinstance(exc, AzureError):
        return ServerFailure(f"{what}: {exc}")
    return ProtocolFailure(f"{what}: {exc!r}")


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
    return f"{host_url(location, scheme)}/{account}"


def block_id(index: int) -> str:
    """The id of a blob's ``index``-th block (ids must all have the same length in a blob)."""
    return base64.b64encode(f"{index:08d}".encode()).decode()


class AzureConnection(ObjectStoreConnection):
    """A session to one storage account; paths resolve against container/prefix."""

    translate = staticmethod(translate)

    container_noun = "container"
    container_option = "containerName"
    appended = "block blobs"

    def __init__(self, location: Location) -> None:
        super().__init__(location)
        self.block_size = mib_option(location, "blockSize", 8, minimum=BYTE)
        self.multipart_size = min(
            mib_option(location, "multipartSize", 0, minimum=BYTE) or self.block_size,
            self.block_size,
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
            self.fail(exc, f"connect {self.location.url}")

    def _blob(self, path: str) -> BlobClient:
        container, name = self.split(path)
        return self._service.get_blob_client(container, name)

    async def _listing(self, container: str, prefix: str, recursive: bool) -> AsyncIterator[Listed]:
        page = int(self.location.option("listPageSize") or 5000)
        client = self._service.get_container_client(container)
        if recursive:
            items: Any = client.list_blobs(name_starts_with=prefix or None, results_per_page=page)
        else:
            items = client.walk_blobs(
                name_starts_with=prefix or None, delimiter="/", results_per_page=page
            )
        async for item in items:
            if isinstance(item, BlobPrefix) or item.name.endswith("/"):
                yield Listed(item.name, is_dir=True)
            else:
                yield Listed(item.name, item.size, utc(item.last_modified))

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        blob = self._blob(path)
        try:
            downloader = await blob.download_blob(offset=offset or None)
        except HttpResponseError as exc:
            if getattr(exc, "error_code", None) == "InvalidRange":
                await self.size(path)  # resuming at the very end: nothing left to send
                return
            self.fail(exc, f"get {path}")
        except Exception as exc:
            self.fail(exc, f"get {path}")
        try:
            async for chunk in downloader.chunks():
                # The SDK's chunks follow max_chunk_get_size; re-cut to our usual block.
                for start in range(0, len(chunk), DEFAULT_CHUNK * 4):
                    yield chunk[start : start + DEFAULT_CHUNK * 4]
        except Exception as exc:
            self.fail(exc, f"get {path}")

    def _md5_settings(self, digest: bytes) -> ContentSettings | None:
        return ContentSettings(content_md5=bytearray(digest)) if self.use_md5 else None

    async def _put_whole(self, container: str, name: str, body: io.BytesIO, length: int) -> None:
        md5 = hashlib.md5(body.getbuffer(), usedforsecurity=False).digest()
        await self._service.get_blob_client(container, name).upload_blob(
            body,
            length=length,
            overwrite=True,
            content_settings=self._md5_settings(md5),
            validate_content=self.use_md5,
        )

    async def _put_parts(self, container: str, name: str, chunker: Chunker) -> None:
        """Staged blocks committed by one Put Block List; uncommitted blocks never show."""
        blob = self._service.get_blob_client(container, name)
        md5 = hashlib.md5(usedforsecurity=False)

        async def stage(number: int, body: io.BytesIO, length: int) -> None:
            await blob.stage_block(
                block_id(number - 1), body, length=length, validate_content=self.use_md5
            )

        def digest(body: io.BytesIO) -> None:
            md5.update(body.getbuffer())

        count = await send_parts(
            chunker, self.block_size, self.buffers, stage, digest if self.use_md5 else None
        )
        await blob.commit_block_list(
            [BlobBlock(block_id=block_id(i)) for i in range(count)],
            content_settings=self._md5_settings(md5.digest()),
        )

    async def _put_marker(self, container: str, name: str) -> None:
        await self._service.get_blob_client(container, name).upload_blob(b"", overwrite=True)

    async def _remove(self, container: str, name: str) -> None:
        await self._service.get_blob_client(container, name).delete_blob()

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
            self.fail(exc, f"rename {source} -> {target}")

    async def delete(self, path: str) -> None:
        try:
            try:
                await self._blob(path).delete_blob()
            except ResourceNotFoundError:
                # Maybe an (empty) directory: its marker blob, if mkdir made one.
                await self._blob(f"{path.rstrip('/')}/").delete_blob()
        except Exception as exc:
            self.fail(exc, f"delete {path}")

    async def size(self, path: str) -> int:
        try:
            props = await self._blob(path).get_blob_properties()
        except Exception as exc:
            self.fail(exc, f"size {path}")
        return int(props.size)

    async def close(self) -> None:
        await self._service.close()


class AzureModule(ObjectStoreModule):
    """Opens ``AzureConnection`` objects; each owns one service client (one HTTP pool)."""

    opens = AzureConnection
