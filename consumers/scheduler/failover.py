"""Host failover of one destination (OpenECPDS's HostProvider), as pure functions over the
destination summary.

Rules kept here:
- only failures that are the host's count (``protocols.base.FAULTS``: connection, login,
  permission, missing directory ...); the file's own and transient ones never move a host;
- hosts are the destination's active dissemination hosts in association priority order
  (an operator's host priority overrides the association's; ties by host id);
- a failing host is retried ``retry_count`` times, each after ``retry_frequency_ms`` counted
  from the failure; one more failure moves to the next host;
- attempts that were already running when a host failed fail with it: a failure counts only if
  its attempt was ordered at or after the host's previous failure, and after the destination
  last moved on from a failing host (one outage, one count: a hundred transfers refused at
  once for a wrong password are one failure, not a hundred cycles);
- moving past the last host wraps to the first and counts one cycle; after the destination's
  ``retry_count`` cycles (``-1`` never) the destination is exhausted (HOLD "Failed"), otherwise
  it sleeps ``retry_frequency_ms`` (IDLE) before the next cycle;
- after a success: "next and retry" returns to the primary host at once; "next and stay" keeps
  the working host and ``reset_frequency_ms`` after leaving the primary goes back to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from bus.events.config import Destination, Host, HostType, OnHostFailure
from consumers.scheduler.state import DestinationSummary, HostFailure


def host_order(
    associations: Mapping[str, int], hosts: Mapping[str, Host], summary: DestinationSummary
) -> tuple[str, ...]:
    """The destination's usable hosts, the one to try first first."""
    usable = []
    for host_id, priority in associations.items():
        host = hosts.get(host_id)
        if (
            host is not None
            and host.active
            and host.type is HostType.DISSEMINATION
            and host_id not in summary.deactivated
        ):
            usable.append((summary.host_priority.get(host_id, priority), host_id))
    usable.sort()
    return tuple(host_id for _, host_id in usable)


def current_host(summary: DestinationSummary, order: tuple[str, ...]) -> str | None:
    """The host new orders go to: the remembered one while usable, else the primary."""
    if summary.current_host in order:
        return summary.current_host
    return order[0] if order else None


def _moved(
    summary: DestinationSummary,
    to_host: str,
    order: tuple[str, ...],
    dest: Destination,
    at: datetime,
) -> DestinationSummary:
    """Summary with ``to_host`` current; leaving the primary starts the reset clock."""
    if order and to_host == order[0]:
        reset_time = None
    elif summary.reset_time is not None:
        reset_time = summary.reset_time
    else:
        reset_time = (
            at + timedelta(milliseconds=dest.reset_frequency_ms)
            if dest.reset_frequency_ms > 0
            else None
        )
    return replace(summary, current_host=to_host, reset_time=reset_time)


def on_failure(
    summary: DestinationSummary,
    order: tuple[str, ...],
    hosts: Mapping[str, Host],
    dest: Destination,
    host_id: str,
    ordered_at: datetime | None,
    at: datetime,
) -> DestinationSummary:
    """Summary after a failure of an attempt on ``host_id`` at ``at`` that was the host's."""
    previous = summary.failures.get(host_id)
    if ordered_at is not None and (
        (previous is not None and ordered_at < previous.last_at)
        or (summary.moved_at is not None and ordered_at < summary.moved_at)
    ):
        return summary  # running alongside the failure already counted
    host = hosts.get(host_id)
    retry_ms = host.retry_frequency_ms if host is not None else 0
    count = (previous.count if previous is not None else 0) + 1
    failures = dict(summary.failures)
    failures[host_id] = HostFailure(count, at, at + timedelta(milliseconds=retry_ms))
    summary = replace(summary, failures=failures)
    current = current_host(summary, order)
    if host is None or host_id != current or count <= host.retry_count:
        return summary
    index = order.index(host_id)
    if index + 1 < len(order):
        nxt = order[index + 1]
        failures.pop(nxt, None)
        summary = replace(
            summary,
            failures=failures,
            moved_at=at,
            switch_reason=f"Host {host_id} failed {count} times: trying the next host",
        )
        return _moved(summary, nxt, order, dest, at)
    cycle = summary.cycle + 1
    exhausted = dest.retry_count >= 0 and cycle >= dest.retry_count
    summary = replace(
        summary,
        failures={},
        moved_at=at,
        cycle=cycle,
        exhausted=summary.exhausted or exhausted,
        sleep_until=None if exhausted else at + timedelta(milliseconds=dest.retry_frequency_ms),
        switch_reason=f"Every host failed (cycle {cycle}): back to the first host",
    )
    return _moved(summary, order[0], order, dest, at)


def on_success(
    summary: DestinationSummary,
    order: tuple[str, ...],
    dest: Destination,
    host_id: str,
    transfer_id: str,
    at: datetime,
) -> DestinationSummary:
    """Summary after a delivery through ``host_id``."""
    failures = dict(summary.failures)
    failures.pop(host_id, None)
    summary = replace(
        summary, failures=failures, cycle=0, sleep_until=None, last_ok=transfer_id, last_error=""
    )
    current = current_host(summary, order)
    if (
        dest.on_host_failure is OnHostFailure.NEXT_AND_RETRY
        and order
        and host_id == current
        and current != order[0]
    ):
        summary = replace(
            summary, switch_reason="Next and retry: back to the primary host after a success"
        )
        return _moved(summary, order[0], order, dest, at)
    return summary


def on_switch(
    summary: DestinationSummary,
    order: tuple[str, ...],
    dest: Destination | None,
    to_host: str,
    at: datetime,
) -> DestinationSummary:
    """Summary after a ``HostSwitched`` (announced or decided): ``to_host`` current, fresh."""
    failures = dict(summary.failures)
    failures.pop(to_host, None)
    summary = replace(summary, failures=failures, announced_host=to_host)
    if dest is None:
        return replace(summary, current_host=to_host)
    return _moved(summary, to_host, order, dest, at)


def reset_due(summary: DestinationSummary, order: tuple[str, ...], now: datetime) -> bool:
    """Whether it is time to go back to the primary host (working on a backup, reset passed)."""
    current = current_host(summary, order)
    return (
        bool(order)
        and current != order[0]
        and summary.reset_time is not None
        and now >= summary.reset_time
        and current not in summary.failures
    )


def retry_wait(summary: DestinationSummary, host: str, now: datetime) -> datetime | None:
    """Until when the current host must not be tried (after a failure), or None."""
    failure = summary.failures.get(host)
    if failure is not None and now < failure.next_try:
        return failure.next_try
    return None
