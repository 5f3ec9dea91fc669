"""Acquisition hosts as work: which (host, destination) pairs to poll or subscribe.

Where a host's transfer module connects is ``protocols.location.location_for``, the one
Host -> Location of every stage (it leaves the ``acquisition.*`` options out)."""

from __future__ import annotations

from bus.config.view import ConfigView
from bus.events.config import HostType
from producers.acquisition.core import DEFAULT_POLLING_MS
from producers.acquisition.wis2 import is_mqtt_host

Job = tuple[str, str]  # host id, destination


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
