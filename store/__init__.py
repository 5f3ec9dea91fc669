"""The Object Data Store: objects with a GUID, metadata and checksums, on disk or in the cloud.

Backends: ``store.local.LocalStore`` (default, ``var/store``), ``store.remote.RemoteStore``
(any transfer module: S3, Azure, GCS, SFTP, file, memory) and ``store.replicated`` (a primary
plus replicas with read fallback). Compression codecs live in ``store.compression``.
"""

from store.checksums import Checksums, Digests
from store.errors import CodecError, ObjectCorrupt, ObjectNotFound, StoreError
from store.objects import ObjectId, ObjectMeta, ObjectSpec, new_object_id
from store.ports import ObjectStore

__all__ = [
    "Checksums",
    "CodecError",
    "Digests",
    "ObjectCorrupt",
    "ObjectId",
    "ObjectMeta",
    "ObjectNotFound",
    "ObjectSpec",
    "ObjectStore",
    "StoreError",
    "new_object_id",
]
