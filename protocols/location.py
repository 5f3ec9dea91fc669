"""The one Host -> Location: where a transfer module connects for a configured ``Host``.

Every stage that reaches a host (movers, acquisition, backup, the named stores) builds its
``Location`` here, so a host's fields are read one way everywhere:

- ``address`` is ``host[:port][/base/path]``. The host is a name (``data.example``), an IPv4
  address (``10.0.0.5``), a bracketed IPv6 literal (``[::1]``, ``[fe80::1]:2222``) or a bare
  IPv6 literal (``::1``, ``2001:db8::7``); a bare literal takes no port, since its last group
  would read as one (RFC 3986 brackets a literal for that reason). A cloud store's address is
  its bucket or container. A port is 1..65535: anything else after the colon, or an unclosed
  bracket, is refused (``ConfigurationError`` on ``host.address``) rather than passed on as a
  host name to fail later as a name-resolution error.
- The path is the address's base path joined with the ``base`` a caller gives (a backup or
  store host's Host Directory read by ``directory_base``; an absolute one wins), or ``root``
  when neither gives one: the login directory (``protocols.base.LOGIN_DIRECTORY``, ``.``), so a
  relative Host Directory resolves from it as every FTP/SFTP client does; the named stores
  pass ``/``.
- ``protocol`` -> URL scheme (lower case, as in ``protocols.registry``); ``login`` -> user;
  ``password`` comes in already decrypted, and ``Location`` keeps it out of ``repr`` and
  ``url``.
- Options lose their module's prefix (``sftp.mkdirs`` -> ``mkdirs``; an ``ftps`` host reads
  ``ftp.*`` too, an ``az`` host ``azure.*``, a ``gs`` host ``gcs.*``) and ``ectrans.``; the
  acquisition stage's own ``acquisition.*`` options are not the module's and are left out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bus.errors import ConfigurationError
from bus.events.config import Host
from protocols.base import LOGIN_DIRECTORY, Location

FIELD: Final = "host.address"

# Host options carry the module's OpenECPDS prefix (``sftp.mkdirs``); modules read bare names.
MODULE_PREFIXES: Final[Mapping[str, tuple[str, ...]]] = {
    "ftp": ("ftp.",),
    "ftps": ("ftps.", "ftp."),
    "sftp": ("sftp.",),
    "http": ("http.",),
    "https": ("https.", "http."),
    "s3": ("s3.",),
    "az": ("az.", "azure."),
    "gs": ("gs.", "gcs."),
    "file": ("file.",),
    "memory": ("memory.",),
}
COMMON_PREFIX: Final = "ectrans."
STAGE_PREFIXES: Final = ("acquisition.",)  # read by a stage, never by a transfer module


@dataclass(frozen=True, slots=True)
class Address:
    """A host's ``address`` taken apart: host (brackets removed), port, base path."""

    host: str
    port: int | None = None
    base: str = ""  # ``/base/path``, or empty when the address has none


def parse_address(address: str) -> Address:
    """``host[:port][/base/path]`` -> ``Address`` (the forms are in the module docstring)."""
    hostport, slash, rest = address.partition("/")
    base = f"/{rest}" if slash else ""
    if hostport.startswith("["):
        literal, closed, after = hostport[1:].partition("]")
        if not closed or not literal or (after and not after.startswith(":")):
            raise _refused(address, "an IPv6 literal is written [address] or [address]:port")
        return Address(literal, _port(after[1:], address) if after else None, base)
    if hostport.count(":") > 1:
        return Address(hostport, None, base)  # a bare IPv6 literal: no port without brackets
    name, colon, port = hostport.partition(":")
    return Address(name, _port(port, address) if colon else None, base)


def _port(text: str, address: str) -> int:
    if text.isascii() and text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise _refused(address, f"port {text!r} is not a number from 1 to 65535")


def _refused(address: str, reason: str) -> ConfigurationError:
    return ConfigurationError(FIELD, f"{address!r}: {reason}")


def directory_base(directory: str) -> str:
    """A Host Directory taken as a base path: its first line not starting with ``(``, cut at
    the first ``$`` (a template makes no sense for a base), stripped; empty when none."""
    for line in directory.splitlines():
        text = line.strip()
        if text and not text.startswith("("):
            return text.split("$", 1)[0].strip()
    return ""


def module_options(protocol: str, options: Mapping[str, str]) -> dict[str, str]:
    """A host's options as its module reads them: own prefix and ``ectrans.`` stripped, the
    stages' own options left out."""
    scheme = protocol.lower()
    prefixes = (*MODULE_PREFIXES.get(scheme, (f"{scheme}.",)), COMMON_PREFIX)
    return {
        next((key[len(p) :] for p in prefixes if key.startswith(p)), key): value
        for key, value in options.items()
        if not key.startswith(STAGE_PREFIXES)
    }


def location_for(
    host: Host, password: str | None, *, base: str = "", root: str = LOGIN_DIRECTORY
) -> Location:
    """Where the transfer module connects for ``host`` (``password`` already decrypted).

    The path is the address's base path joined with ``base``, or ``root`` when both are empty.
    """
    address = parse_address(host.address)
    path = posixpath.join(address.base, base) if base else address.base
    return Location(
        scheme=host.protocol.lower(),
        host=address.host,
        port=address.port,
        user=host.login,
        password=password,
        path=path or root,
        options=module_options(host.protocol, host.options),
    )
