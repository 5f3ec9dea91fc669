"""What a dissemination target-path template can see: ``RenderContext`` and the placeholder table.

``RenderContext`` is a frozen dataclass of plain values gathered by the mover for one transfer.
It holds no secrets: ``$host[passwd]`` and ``$host[data]`` (the host's option text, which may
carry credentials) always render as the empty string, so a secret can never end up in a remote
path, a listing or a log line built from a path.

``FIELDS`` maps each placeholder family to its fields and the accessor that renders one; the
parser resolves a placeholder to its accessor once, so rendering is a call per placeholder.
Times render as milliseconds since the epoch, as OpenECPDS does (``Timestamp.getTime()``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from types import MappingProxyType

__all__ = ["FIELDS", "Accessor", "RenderContext", "format_size"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RenderContext:
    """Plain values about one transfer, its data file, host and destination (no secrets)."""

    now: datetime
    host_name: str = ""
    host_comment: str = ""
    host_host: str = ""
    host_login: str = ""
    host_user_mail: str = ""
    host_network_code: str = ""
    host_network_name: str = ""
    host_nickname: str = ""
    host_check_filename: str = ""
    data_file_id: str = ""
    data_file_original: str = ""
    data_file_source: str = ""
    data_file_size: int = 0
    data_file_checksum: str = ""
    data_file_time_step: str = ""
    data_file_arrived_time: datetime | None = None
    data_file_time_base: datetime | None = None
    data_file_time_file: datetime | None = None
    data_file_meta_time: str = ""
    data_file_meta_stream: str = ""
    transfer_id: str = ""
    transfer_target: str = ""
    transfer_comment: str = ""
    transfer_identity: str = ""
    transfer_priority: int = 99
    transfer_scheduled: datetime | None = None
    transfer_status: str = ""
    transfer_asap: bool = False
    destination_name: str = ""
    destination_comment: str = ""
    destination_user_mail: str = ""
    country_name: str = ""
    country_iso: str = ""
    ecuser_name: str = ""
    ecuser_comment: str = ""
    ecuser_dir: str = ""
    ecuser_shell: str = ""
    ecuser_gid: str = ""
    ecuser_uid: str = ""
    transfer_method_name: str = ""
    transfer_method_comment: str = ""
    transfer_method_value: str = ""
    ectrans_module_name: str = ""
    ectrans_module_classe: str = ""
    ectrans_module_archive: str = ""
    transfer_server_name: str = ""
    transfer_server_host: str = ""
    transfer_server_port: str = ""
    original_transfer_server_name: str = ""
    original_transfer_server_host: str = ""
    original_transfer_server_port: str = ""
    transfer_group_name: str = ""
    transfer_group_comment: str = ""
    mover_name: str = ""
    system_message: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


Accessor = Callable[[RenderContext], str]


def _millis(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str((moment - _EPOCH) // _MILLISECOND)


_SIZE_UNITS = (
    (1 << 60, "Ebytes"),
    (1 << 50, "Pbytes"),
    (1 << 40, "Tbytes"),
    (1 << 30, "Gbytes"),
    (1 << 20, "Mbytes"),
    (1 << 10, "Kbytes"),
)


def format_size(size: int) -> str:
    """Human size as OpenECPDS writes it (``1.5 Mbytes``, ``10 bytes``, ``1 byte``)."""
    for scale, unit in _SIZE_UNITS:
        if abs(size) >= scale:
            return f"{round(size / scale * 100) / 100} {unit}"
    return f"{size} byte{'s' if abs(size) > 1 else ''}"


def _target_path(target: str) -> str:
    # java.io.File.getPath(): duplicate and trailing separators removed
    path = posixpath.normpath(target) if target else ""
    return "" if path == "." else path


def _parent(target: str) -> str:
    path = _target_path(target)
    return posixpath.dirname(path) if "/" in path else ""


def _attr(name: str) -> Accessor:
    get = attrgetter(name)
    return lambda c: str(get(c))


def _empty(_c: RenderContext) -> str:
    return ""


FIELDS: Mapping[str, Mapping[str, Accessor]] = {
    "host": {
        "name": _attr("host_name"),
        "comment": _attr("host_comment"),
        "host": _attr("host_host"),
        "login": _attr("host_login"),
        "passwd": _empty,  # secrets never go into paths
        "userMail": _attr("host_user_mail"),
        "networkCode": _attr("host_network_code"),
        "networkName": _attr("host_network_name"),
        "nickname": _attr("host_nickname"),
        "checkFilename": _attr("host_check_filename"),
        "data": _empty,  # the host's options may hold credentials
    },
    "dataFile": {
        "timeStep": _attr("data_file_time_step"),
        "arrivedTime": lambda c: _millis(c.data_file_arrived_time),
        "id": _attr("data_file_id"),
        "original": _attr("data_file_original"),
        "source": _attr("data_file_source"),
        "formatSize": lambda c: format_size(c.data_file_size),
        "size": _attr("data_file_size"),
        "timeBase": lambda c: _millis(c.data_file_time_base),
        "timeFile": lambda c: _millis(c.data_file_time_file),
        "metaTime": _attr("data_file_meta_time"),
        "metaStream": _attr("data_file_meta_stream"),
        "checksum": _attr("data_file_checksum"),
    },
    "dataTransfer": {
        "target": _attr("transfer_target"),
        "id": _attr("transfer_id"),
        "comment": _attr("transfer_comment"),
        "identity": _attr("transfer_identity"),
        "priority": _attr("transfer_priority"),
        "scheduled": lambda c: _millis(c.transfer_scheduled),
        "statusCode": _attr("transfer_status"),
        "name": lambda c: posixpath.basename(_target_path(c.transfer_target)),
        "path": lambda c: _target_path(c.transfer_target),
        "parent": lambda c: _parent(c.transfer_target),
        "asap": lambda c: "true" if c.transfer_asap else "false",
    },
    "destination": {
        "name": _attr("destination_name"),
        "comment": _attr("destination_comment"),
        "userMail": _attr("destination_user_mail"),
    },
    "country": {"name": _attr("country_name"), "iso": _attr("country_iso")},
    "ecuser": {
        key: _attr(f"ecuser_{key}") for key in ("name", "comment", "dir", "shell", "gid", "uid")
    },
    "transferMethod": {
        key: _attr(f"transfer_method_{key}") for key in ("name", "comment", "value")
    },
    "ectransModule": {key: _attr(f"ectrans_module_{key}") for key in ("name", "classe", "archive")},
    "transferServer": {key: _attr(f"transfer_server_{key}") for key in ("name", "host", "port")},
    "originalTransferServer": {
        key: _attr(f"original_transfer_server_{key}") for key in ("name", "host", "port")
    },
    "transferGroup": {
        "name": _attr("transfer_group_name"),
        "comment": _attr("transfer_group_comment"),
    },
    "system": {"message": _attr("system_message")},
}
