"""The ``s3`` transfer module: any S3-compatible endpoint through aioboto3.

Location: ``s3://ACCESS_KEY:SECRET@host:port/bucket/prefix``. The first path segment is the
bucket unless the ``bucketName`` option names it; the rest is the key prefix. Directories are
emulated by prefix: a non-recursive list uses the delimiter ``/``, a recursive one none.
Options (OpenECPDS ``s3.*`` names): ``scheme`` (``https``), ``region`` (``us-east-1``),
``enablePathStyleAccess`` (default yes unless the host is AWS), ``sslValidation`` (yes),
``mkBucket`` (create the bucket on connect), ``partSize`` (MiB, default 10, min 5),
``multipartSize`` (MiB, at most and by default ``partSize``: smaller objects go in one PUT),
``numUploadThreads`` (2), ``queueCapacity`` (4), ``dirMarker`` (mkdir writes ``dir/``),
``listPageSize`` (keys per ListObjectsV2 page, 1000),
``usetmp`` (no), ``connectTimeOut``/``readTimeOut`` (seconds), ``retryCount`` (SDK attempts).

Rules kept:
- ``usetmp`` defaults to False: an object PUT is atomic (a reader sees the old object or the
  whole new one, never a prefix) and an aborted multipart upload leaves no object, so writing
  under a temporary key then copying would only double the bytes moved. When asked, the
  temporary key is renamed by server-side copy + delete.
- A multipart upload holds at most ``numUploadThreads + queueCapacity`` part buffers at once
  (one semaphore slot per buffer, taken before a part is filled and given back after it is
  sent), so part buffers never exceed ``(threads + queue) x partSize`` whatever the object size
  (at most 10,000 parts: 100 GB with 10 MiB parts); on any failure or cancellation the
  multipart upload is aborted so nothing appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, NoReturn

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

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
COPY_LIMIT = 5 * 1024 * MIB  # CopyObject refuses larger sources: use the managed copy
AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "InvalidToken",
    "ExpiredToken",
    "AuthFailure",
    "MissingAuthenticationToken",
}
DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}
MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "NoSuchUpload"}
RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError"}


def translate(exc: BaseException, what: str) -> TransferError:
    """Map a botocore/aiohttp error to the project's own (caller chains it with ``from``)."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{what}: {code or status} {error.get('Message', '')}".strip()
        if code in AUTH_CODES:
            return AuthenticationFailed(text)
        if code in DENIED_CODES or status == 403:
            return PermissionDenied(text)
        if code in MISSING_CODES or status == 404:
            return NotFound(text)
        if code in RETRY_CODES or status >= 500 or status == 429:
            return ServerFailure(text)
        return ProtocolFailure(text)
    if isinstance(exc, NoCredentialsError):
        return AuthenticationFailed(f"{what}: no credentials")
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError, asyncio.TimeoutError)):
        return TransferTimeout(f"{what}: timed out ({exc})")
    if isinstance(exc, (BotoConnectionError, aiohttp.ClientError, OSError)):
        return ConnectionLost(f"{what}: {exc}")
    if isinstance(exc, BotoCoreError):
        return ServerFailure(f"{what}: {exc}")
    return ProtocolFailure(f"{what}: {exc!r}")


def utc(moment: datetime | None) -> datetime | None:
    """Listings carry UTC times whatever zone the SDK attached."""
    return moment.astimezone(UTC) if moment else None


def fail(exc: BaseException, what: str, source: Chunker | None = None) -> NoReturn:
    """Raise the translated error; an error of the caller's own source stream passes as is."""
    if source is not None and exc is source.error:
        raise exc
    raise translate(exc, what) from exc


def mib_option(location: Location, name: str, default: int, minimum: int = 1) -> int:
    """An option given in MiB, returned in bytes (never below ``minimum`` MiB)."""
    raw = location.option(name)
    try:
        value = float(raw) if raw else float(default)
    except ValueError as exc:
        raise ProtocolFailure(f"option {name}={raw!r} is not a number of MiB") from exc
    return int(max(value, minimum) * MIB)


def int_option(location: Location, name: str, default: int) -> int:
    raw = location.option(name)
    return max(1, int(raw)) if raw else default


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


class S3Module:
    """Opens ``S3Connection`` objects; the underlying aiohttp pool is per connection."""

    async def connect(self, location: Location) -> S3Connection:
        connection = S3Connection(location)
        await connection.open()
        return connection


class S3Connection:
    """A session to one S3 endpoint; paths resolve against the location's bucket/prefix."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.part_size = mib_option(location, "partSize", 10, minimum=5)
        self.multipart_size = min(
            mib_option(location, "multipartSize", self.part_size // MIB), self.part_size
        )
        self.threads = int_option(location, "numUploadThreads", 2)
        self.queue = int(location.option("queueCapacity") or 4)
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        loc = self.location
        scheme = loc.option("scheme", "https") or "https"
        endpoint = None
        aws = not loc.host or loc.host.endswith("amazonaws.com")
        if loc.host:
            port = f":{loc.port}" if loc.port else ""
            endpoint = f"{scheme}://{loc.host}{port}"
        config = Config(
            region_name=loc.option("region", "us-east-1"),
            s3={
                "addressing_style": "path" if loc.flag("enablePathStyleAccess", not aws) else "auto"
            },
            connect_timeout=float(loc.option("connectTimeOut") or 60),
            read_timeout=float(loc.option("readTimeOut") or 300),
            retries={"max_attempts": int_option(loc, "retryCount", 3), "mode": "standard"},
            # Checksums on every request cost CPU for nothing on loopback and some
            # S3-compatible servers reject them; send them only where the API requires.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=max(10, self.threads * 2),
        )
        session = aioboto3.Session(
            aws_access_key_id=loc.user,
            aws_secret_access_key=loc.password,
            region_name=config.region_name,
        )
        try:
            self._client = await self._stack.enter_async_context(
                session.client(
                    "s3",
                    endpoint_url=endpoint,
                    config=config,
                    verify=loc.flag("sslValidation", True),
                )
            )
            if loc.flag("mkBucket", False):
                bucket, _ = self.split(loc.resolve("."))
                await self._make_bucket(bucket)
        except BaseException as exc:
            await self._stack.aclose()
            if not isinstance(exc, Exception):
                raise  # cancellation is not a transfer failure
            fail(exc, f"connect {loc.url}")

    async def _make_bucket(self, bucket: str) -> None:
        try:
            await self._client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def split(self, path: str) -> tuple[str, str]:
        """``(bucket, key)`` for a path; raises if no bucket can be found."""
        resolved = self.location.resolve(path).lstrip("/")
        bucket = self.location.option("bucketName")
        if not bucket:
            bucket, _, resolved = resolved.partition("/")
        if not bucket or bucket == ".":
            raise ProtocolFailure(f"{path!r}: no bucket in the path and no bucketName option")
        return bucket, "" if resolved == "." else resolved

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
        params: dict[str, str] = {"Bucket": bucket, "Prefix": prefix}
        if not recursive:
            params["Delimiter"] = "/"
        entries: list[Entry] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            pages = {"PageSize": int(self.location.option("listPageSize") or 1000)}
            async for page in paginator.paginate(**params, PaginationConfig=pages):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) :].rstrip("/")
                    entries.append(Entry(name=name, size=0, mtime=None, is_dir=True))
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    if not name:
                        continue  # the directory's own marker
                    is_dir = name.endswith("/")
                    entries.append(
                        Entry(
                            name=name.rstrip("/"),
                            size=0 if is_dir else int(obj["Size"]),
                            mtime=utc(obj.get("LastModified")),
                            is_dir=is_dir,
                        )
                    )
        except Exception as exc:
            fail(exc, f"list {path}")
        return select(entries, pattern, regex)

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        bucket, key = self.split(path)
        params: dict[str, str] = {"Bucket": bucket, "Key": key}
        if offset:
            params["Range"] = f"bytes={offset}-"
        try:
            response = await self._client.get_object(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                # Resuming at the end of the object: nothing left to send.
                await self.size(path)
                return
            fail(exc, f"get {path}")
        except Exception as exc:
            fail(exc, f"get {path}")
        body = response["Body"]
        try:
            async with body:
                async for chunk in body.iter_chunks(DEFAULT_CHUNK):
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
            raise ProtocolFailure(f"put {path}: S3 objects cannot be appended to (offset {offset})")
        if use_tmp is None:
            use_tmp = self.location.flag("usetmp", False)
        target = temporary_name(path, self.location) if use_tmp else path
        bucket, key = self.split(target)
        written = await self._upload(bucket, key, data, path)
        if use_tmp:
            try:
                await self.rename(target, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._client.delete_object(Bucket=bucket, Key=key))
                raise
        return written

    async def _upload(self, bucket: str, key: str, data: AsyncIterable[bytes], path: str) -> int:
        chunker = Chunker(data)
        try:
            first = await chunker.next(self.multipart_size)
            if chunker.exhausted:
                await self._client.put_object(Bucket=bucket, Key=key, Body=first)
                return chunker.total
        except Exception as exc:
            fail(exc, f"put {path}", chunker)
        chunker.unread(first)
        del first  # the multipart loop owns the buffer now
        return await self._multipart(bucket, key, chunker, path)

    async def _multipart(self, bucket: str, key: str, chunker: Chunker, path: str) -> int:
        try:
            created = await self._client.create_multipart_upload(Bucket=bucket, Key=key)
        except Exception as exc:
            fail(exc, f"put {path}")
        upload_id = created["UploadId"]
        slots = asyncio.Semaphore(self.threads + self.queue)
        parts: dict[int, str] = {}
        tasks: list[asyncio.Task[None]] = []

        async def send(number: int, body: io.BytesIO) -> None:
            try:
                sent = await self._client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                parts[number] = sent["ETag"]
            finally:
                slots.release()

        try:
            while True:
                await slots.acquire()
                body = await chunker.next(self.part_size)
                if not chunker.last and tasks:
                    slots.release()
                    break
                tasks.append(asyncio.create_task(send(len(tasks) + 1, body)))
                del body  # only the sending task may keep the buffer alive
                for task in tasks:
                    if task.done():
                        task.result()  # fail fast: a failed part stops the producer
                if chunker.exhausted:
                    break
            await asyncio.gather(*tasks)
            await self._client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": parts[n]} for n in sorted(parts)]
                },
            )
        except BaseException as exc:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                )
            if not isinstance(exc, Exception):
                raise
            fail(exc, f"put {path}", chunker)
        return chunker.total

    async def rename(self, source: str, target: str) -> None:
        src_bucket, src_key = self.split(source)
        dst_bucket, dst_key = self.split(target)
        try:
            size = await self.size(source)
            copy_source = {"Bucket": src_bucket, "Key": src_key}
            if size > COPY_LIMIT:
                await self._client.copy(copy_source, dst_bucket, dst_key)
            else:
                await self._client.copy_object(
                    CopySource=copy_source, Bucket=dst_bucket, Key=dst_key
                )
            await self._client.delete_object(Bucket=src_bucket, Key=src_key)
        except Exception as exc:
            fail(exc, f"rename {source} -> {target}")

    async def delete(self, path: str) -> None:
        bucket, key = self.split(path)
        try:
            # DeleteObject succeeds on a missing key; HEAD first so a missing file is reported.
            if not await self._exists(bucket, key):
                marker = f"{key.rstrip('/')}/"
                if not await self._exists(bucket, marker):
                    raise NotFound(f"delete {path}: no such object")
                key = marker
            await self._client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            fail(exc, f"delete {path}")

    async def _exists(self, bucket: str, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if isinstance(translate(exc, ""), NotFound):
                return False
            raise
        return True

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        if not self.location.flag("dirMarker", False):
            return  # prefixes exist as soon as an object is under them
        bucket, key = self.split(path)
        if not key:
            return
        try:
            await self._client.put_object(Bucket=bucket, Key=f"{key.rstrip('/')}/", Body=b"")
        except Exception as exc:
            fail(exc, f"mkdir {path}")

    async def size(self, path: str) -> int:
        bucket, key = self.split(path)
        try:
            head = await self._client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            fail(exc, f"size {path}")
        return int(head["ContentLength"])

    async def close(self) -> None:
        await self._stack.aclose()
