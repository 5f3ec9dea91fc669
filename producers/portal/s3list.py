"""S3's flat listing over the portal's folders: the keys of a bucket under a prefix, grouped by
a delimiter, in key order, one page at a time (``ListObjects`` v1 and v2).

Rules kept here:

- Keys are the view's paths inside the destination (``folder/name``); with the delimiter
  ``/`` only the folder the prefix ends in is listed (its sub-folders are common prefixes);
  without one (or with another) every folder under it is walked, at most ``MAX_KEYS`` keys.
- Keys sort by code point (the order of their UTF-8 bytes, as S3). A page starts after the
  marker (v1 ``marker``, v2 ``start-after`` or the continuation token, which is the last key
  or prefix of the previous page, base64-encoded) and holds at most ``max-keys`` entries
  (objects and common prefixes together, 1000 at most).
"""

from __future__ import annotations

import base64
import binascii

from producers.portal.access import PortalPath
from producers.portal.errors import NotFound
from producers.portal.s3xml import Listed, Page, S3Error
from producers.portal.service import Entry, Session

MAX_KEYS = 100_000  # walked for one listing without the "/" delimiter


def etag_of(entry: Entry) -> str:
    """A listed file's ETag: its MD5 (single-part S3 semantics), else ADLER32 and size."""
    item = entry.available
    if item is not None and item.md5:
        return f'"{item.md5}"'
    if item is not None:
        return f'"{item.adler32 or "x"}-{item.size}"'
    return f'"staged-{entry.size or 0}"'


def token_of(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def key_of_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "the continuation token is not valid", 400) from None


async def _folder(session: Session, bucket: str, folder: str) -> list[Entry]:
    parts = (bucket, *folder.split("/")) if folder else (bucket,)
    try:
        return await session.list(PortalPath(parts))
    except NotFound:
        return []


async def keys(
    session: Session, bucket: str, prefix: str, delimiter: str
) -> tuple[list[Listed], list[str]]:
    """Every object and common prefix of ``bucket`` under ``prefix`` (sorted)."""
    base = prefix.rpartition("/")[0]
    objects: list[Listed] = []
    prefixes: set[str] = set()
    queue = [base]
    while queue:
        folder = queue.pop()
        lead = folder + "/" if folder else ""
        for entry in await _folder(session, bucket, folder):
            key = lead + entry.name
            if entry.folder:
                if not (key + "/").startswith(prefix) and not prefix.startswith(key + "/"):
                    continue
                if delimiter == "/":
                    prefixes.add(key + "/")
                else:
                    queue.append(key)
                continue
            if not key.startswith(prefix):
                continue
            objects.append(Listed(key, entry.size or 0, entry.mtime, etag_of(entry)))
            if len(objects) > MAX_KEYS:
                raise S3Error(
                    "InvalidArgument", f"more than {MAX_KEYS} keys: list with a delimiter", 400
                )
    if delimiter and delimiter != "/":
        kept = []
        for listed in objects:
            rest = listed.key[len(prefix) :]
            at = rest.find(delimiter)
            if at >= 0:
                prefixes.add(prefix + rest[: at + len(delimiter)])
            else:
                kept.append(listed)
        objects = kept
    objects.sort(key=lambda o: o.key)
    return objects, sorted(prefixes)


def page(objects: list[Listed], prefixes: list[str], after: str, most: int) -> Page:
    """The entries after ``after``, at most ``most`` of them, in key order."""
    merged: list[tuple[str, Listed | None]] = [(o.key, o) for o in objects if o.key > after]
    merged += [(p, None) for p in prefixes if p > after]
    merged.sort(key=lambda item: item[0])
    shown = merged[:most]
    truncated = len(merged) > most
    return Page(
        objects=[o for _, o in shown if o is not None],
        prefixes=[k for k, o in shown if o is None],
        truncated=truncated,
        last=shown[-1][0] if shown else None,
    )


__all__ = ["MAX_KEYS", "etag_of", "key_of_token", "keys", "page", "token_of"]
