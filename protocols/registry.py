"""Transfer modules by URL scheme.

One explicit dict: adding a protocol is one module plus one line here. Modules are imported
lazily so a process that only uses ``file`` never imports the cloud SDKs.
"""

from __future__ import annotations

import importlib

from protocols.base import Connection, Location, Module, ProtocolFailure

MODULES: dict[str, str] = {
    "ftp": "protocols.ftp:FtpModule",
    "ftps": "protocols.ftp:FtpModule",
    "sftp": "protocols.sftp:SftpModule",
    "http": "protocols.http:HttpModule",
    "https": "protocols.http:HttpModule",
    "s3": "protocols.s3:S3Module",
    "az": "protocols.azure:AzureModule",
    "gs": "protocols.gcs:GcsModule",
    "file": "protocols.file:FileModule",
    "memory": "protocols.memory:MemoryModule",
}


def module_for(scheme: str) -> Module:
    """The module registered for ``scheme``; an unknown scheme is a permanent failure."""
    target = MODULES.get(scheme.lower())
    if target is None:
        known = ", ".join(sorted(MODULES))
        raise ProtocolFailure(f"no transfer module for scheme {scheme!r} (known: {known})")
    module_name, _, class_name = target.partition(":")
    module_class = getattr(importlib.import_module(module_name), class_name)
    instance: Module = module_class()
    return instance


async def connect(location: Location) -> Connection:
    """Open a connection to ``location`` with the module for its scheme."""
    return await module_for(location.scheme).connect(location)
