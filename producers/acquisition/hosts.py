"""Acquisition hosts as work: which (host, destination) pairs to poll or subscribe, and where
a host's transfer module connects (the small logic of the movers' ``location_for``, copied
because a producer may not import a consumer)."""

from __future__ import annotations

from bus.config.view import ConfigView
from bus.events.config import Host, HostType
from producers.acquisition.core import DEFAULT_POLLING_MS
from producers.acquisition.wis2 import is_mqtt_host
from protocols.base import LOGIN_DIRECTORY, Location

Job = tuple[str, str]  # host id, destination

# Host options carry the module's OpenECPDS prefix (``sftp.port``); modules read bare names
# (the same table as the movers', which a producer may not import).
MODULE_PREFIXES: dict[str, tuple[str, ...]] = {
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


def location_for(host: Host, password: str | None) -> Location:
    """Where the module connects for ``host`` (``address`` = ``host[:port][/base]``)."""
    hostport, slash, base = host.address.partition("/")
    name, port = hostport, None
    head, sep, tail = hostport.rpartition(":")
    if sep and tail.isdigit() and not head.endswith(":"):
        name, port = head, int(tail)
    prefixes = (*MODULE_PREFIXES.get(host.protocol.lower(), ()), "ectrans.")
    options = {
        next((k[len(p) :] for p in prefixes if k.startswith(p)), k): v
        for k, v in host.options.items()
        if not k.startswith("acquisition.")
    }
    return Location(
        scheme=host.protocol.lower(),
        host=name.strip("[]"),
        port=port,
        user=host.login,
        password=password,
        path=f"/{base}" if slash else LOGIN_DIRECTORY,
        options=options,
    )


def jobs_of(view: ConfigView, *, mqtt: bool = False) -> dict[Job, int]:
    """Every (acquisition host, destination) to poll, with its polling period in ms (with
    ``mqtt``: those driven by MQTT notifications instead). One pass over the associations."""
    jobs: dict[Job, int] = {}
    for association in view.associations.values():
        host = view.hosts.get(association.host)
        dest = view.destinations.get(association.destination)
        if host is None or dest is None or not dest.active:
            continue
        if host.type is not HostType.ACQUISITION or not host.active:
            continue
        if is_mqtt_host(host) is not mqtt:
            continue
        period = max(host.polling_frequency_ms or DEFAULT_POLLING_MS, 100)
        jobs[(host.id, dest.name)] = period
    return dict(sorted(jobs.items()))
