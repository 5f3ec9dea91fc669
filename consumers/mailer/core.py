"""Which transfer event mails whom, and what the mail says (pure: no I/O, time from the event).

Rules (ECPDS-REFERENCE §2.5 "Email"), from the destination's ``properties`` and the host's
``options`` (keys checked by ``bus.config.validate``):

- ``TransferStarted`` -> the destination's ``mail.to`` if ``mail.onStart``;
- ``TransferSucceeded`` -> the destination's ``mail.to`` if ``mail.onEnd``, and the host's
  (the event's ``host_id``) ``mail.to`` if ``mail.onSuccess``;
- ``TransferFailed`` -> the destination's ``mail.to`` if ``mail.onError``, and the host's
  ``mail.to`` if ``mail.onError``; with ``mail.notifyOnce``, a host that was sent an error mail
  gets no other one until a transfer through it succeeds again;
- ``DestinationStatusChanged`` -> the destination's ``mail.to`` if ``mail.onUpdate``;
- ``TransferLate`` (``ecpds.products``, from the timeliness watcher) -> the destination's
  ``mail.to`` if ``mail.onLate``.

Success and failure events do not carry the target: it is remembered from the transfer's
``TransferQueued`` (earlier on the same partition, the topic being keyed by destination),
bounded; a transfer whose queueing was not seen (before the committed offset at a restart)
is named by its remote path or its id. The notify-once memory is in memory as well, so a
restart may send one more error mail for a host that is still failing.

Nothing secret goes into a mail: hosts are named by id and nickname (never address, login or
credentials), and credentials written in URLs inside error messages are masked.
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from bus.config.secrets import MASK
from bus.config.validate import MAIL_TRUE, mail_addresses
from bus.config.view import ConfigView
from bus.events import Envelope, Event
from bus.events.config import Host
from bus.events.notifications import MailFailed
from bus.events.products import TransferLate
from bus.events.transfers import (
    DestinationStatusChanged,
    TransferFailed,
    TransferQueued,
    TransferStarted,
    TransferSucceeded,
)

REMEMBERED: Final = 100_000
PREFIX: Final = "[ecpds]"
# user:password@ in a URL (an error message quoting a URL must not leak it)
_URL_CREDENTIALS: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail to send: recipients, plain-text subject and body, and a stable identity.

    ``message_id`` is derived from the event and the rule that mailed it, so a mail made again
    for a redelivered event has the same ``Message-ID`` (receivers and the outbox dedupe on it).
    """

    to: tuple[str, ...]
    subject: str
    body: str
    message_id: str
    occurred_at: datetime
    rule: str  # e.g. "destination.onEnd", "host.onError": what made it (logs, file names)


@dataclass
class MailerState:
    """What the rules remember between events: targets of transfers, hosts in error."""

    targets: OrderedDict[str, str] = field(default_factory=OrderedDict)  # transfer id -> target
    failing_hosts: set[str] = field(default_factory=set)  # error mailed, no success since
    limit: int = REMEMBERED


def flag(values: Mapping[str, str], key: str) -> bool:
    """Whether a yes/no/true/false option is on (absent = off)."""
    return values.get(key, "").strip().lower() in MAIL_TRUE


def recipients(values: Mapping[str, str]) -> tuple[str, ...]:
    """The addresses of ``mail.to`` (none when absent)."""
    return mail_addresses(values.get("mail.to", ""))


def mask(text: str) -> str:
    """``text`` with credentials in URLs replaced by ``***``."""
    return _URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text)


def evolve(state: MailerState, view: ConfigView, event: Event) -> None:
    """Remember what later mails need; call after ``decide`` for the same event."""
    match event:
        case TransferQueued(transfer_id=tid, target=target):
            state.targets[tid] = target
            state.targets.move_to_end(tid)
            while len(state.targets) > state.limit:
                state.targets.popitem(last=False)
        case TransferSucceeded(host_id=host_id):
            state.failing_hosts.discard(host_id)
        case TransferFailed(host_id=host_id):
            failed = view.hosts.get(host_id)
            if failed is not None and _host_error_mailed(failed):
                state.failing_hosts.add(host_id)


def _host_error_mailed(host: Host) -> bool:
    return flag(host.options, "mail.onError") and bool(recipients(host.options))


def decide(state: MailerState, view: ConfigView, event: Event) -> tuple[Mail, ...]:
    """The mails ``event`` calls for under ``view`` (see the module docstring)."""
    match event:
        case TransferStarted():
            return _destination(view, event.destination, "onStart", event, _started(state, event))
        case TransferSucceeded():
            text = _succeeded(state, view, event)
            mails = _destination(view, event.destination, "onEnd", event, text)
            return mails + _host(view, event.host_id, "onSuccess", event, text)
        case TransferFailed():
            text = _failed(state, view, event)
            mails = _destination(view, event.destination, "onError", event, text)
            host = view.hosts.get(event.host_id)
            once = host is not None and flag(host.options, "mail.notifyOnce")
            if once and event.host_id in state.failing_hosts:
                return mails
            return mails + _host(view, event.host_id, "onError", event, text)
        case DestinationStatusChanged():
            return _destination(view, event.destination, "onUpdate", event, _status(event))
        case TransferLate():
            return _destination(view, event.destination, "onLate", event, _late(event))
    return ()


Text = tuple[str, str, str]  # subject for the destination, subject for the host, body


def _destination(
    view: ConfigView, name: str, rule: str, event: Event, text: Text
) -> tuple[Mail, ...]:
    destination = view.destinations.get(name)
    if destination is None or not flag(destination.properties, f"mail.{rule}"):
        return ()
    to = recipients(destination.properties)
    return (_mail(to, text[0], text[2], event, f"destination.{rule}"),) if to else ()


def _host(view: ConfigView, host_id: str, rule: str, event: Event, text: Text) -> tuple[Mail, ...]:
    host = view.hosts.get(host_id)
    if host is None or not flag(host.options, f"mail.{rule}"):
        return ()
    to = recipients(host.options)
    return (_mail(to, text[1], text[2], event, f"host.{rule}"),) if to else ()


def _mail(to: tuple[str, ...], subject: str, body: str, event: Event, rule: str) -> Mail:
    envelope = event.envelope
    message_id = f"<{envelope.event_id}.{rule}@ecpds>"
    return Mail(to, subject, body, message_id, envelope.occurred_at, rule)


def _target(state: MailerState, transfer_id: str, fallback: str | None = None) -> str:
    return state.targets.get(transfer_id) or fallback or f"id {transfer_id}"


def _host_name(view: ConfigView, host_id: str) -> str:
    host = view.hosts.get(host_id)
    return f"{host_id} ({host.nickname})" if host is not None else host_id


def _when(event: Event) -> str:
    return event.envelope.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _lines(pairs: list[tuple[str, object]]) -> str:
    width = max(len(label) for label, _ in pairs)
    return "".join(f"{label + ':':<{width + 1}} {value}\n" for label, value in pairs)


def _subjects(destination: str, host_id: str, target: str, outcome: str) -> tuple[str, str]:
    return (
        f"{PREFIX} {destination}: transfer of {target} {outcome}",
        f"{PREFIX} host {host_id}: transfer of {target} to {destination} {outcome}",
    )


def _started(state: MailerState, e: TransferStarted) -> Text:
    target = _target(state, e.transfer_id)
    subject, host_subject = _subjects(e.destination, e.host_id, target, "STARTED")
    body = _lines(
        [
            ("Destination", e.destination),
            ("Transfer id", e.transfer_id),
            ("Target", target),
            ("Host", e.host_id),
            ("Attempt", e.attempt),
            ("Status", "EXEC (transferring)"),
            ("Time (UTC)", _when(e)),
        ]
    )
    return subject, host_subject, body


def _succeeded(state: MailerState, view: ConfigView, e: TransferSucceeded) -> Text:
    target = _target(state, e.transfer_id, e.remote_path)
    subject, host_subject = _subjects(e.destination, e.host_id, target, "DONE")
    body = _lines(
        [
            ("Destination", e.destination),
            ("Transfer id", e.transfer_id),
            ("Target", target),
            ("Host", _host_name(view, e.host_id)),
            ("Attempt", e.attempt),
            ("Status", "DONE"),
            ("Bytes", e.bytes_sent),
            ("Duration", f"{e.duration_ms / 1000:.3f} s"),
            ("Rate", f"{e.bytes_per_second:.0f} B/s"),
            ("Time (UTC)", _when(e)),
        ]
    )
    return subject, host_subject, body


def _failed(state: MailerState, view: ConfigView, e: TransferFailed) -> Text:
    target = _target(state, e.transfer_id)
    outcome = f"FAILED (attempt {e.attempt})"
    subject, host_subject = _subjects(e.destination, e.host_id, target, outcome)
    body = _lines(
        [
            ("Destination", e.destination),
            ("Transfer id", e.transfer_id),
            ("Target", target),
            ("Host", _host_name(view, e.host_id)),
            ("Attempt", e.attempt),
            ("Status", "will be retried" if e.retriable else "permanent error"),
            ("Bytes", e.bytes_sent),
            ("Duration", f"{e.duration_ms / 1000:.3f} s"),
            ("Error", f"{e.error_class}: {mask(e.message)}"),
            ("Time (UTC)", _when(e)),
        ]
    )
    return subject, host_subject, body


def _status(e: DestinationStatusChanged) -> Text:
    was = f" (was {e.old_status.value})" if e.old_status is not None else ""
    subject = f"{PREFIX} {e.destination}: destination status {e.new_status.value}{was}"
    pairs: list[tuple[str, object]] = [
        ("Destination", e.destination),
        ("Status", e.new_status.value),
        ("Previous status", e.old_status.value if e.old_status is not None else "-"),
        ("Reason", mask(e.reason) or "-"),
    ]
    if e.actor:
        pairs.append(("By", e.actor))
    if e.until is not None:
        pairs.append(("Until (UTC)", e.until.strftime("%Y-%m-%d %H:%M:%S")))
    pairs.append(("Time (UTC)", _when(e)))
    return subject, subject, _lines(pairs)


def refused(
    mail: Mail, event: Event, error_class: str, reason: str, now: datetime, source: str
) -> MailFailed:
    """The ``MailFailed`` recording that ``mail``, made for ``event``, was refused for good.

    Its event id is derived from the mail's ``Message-ID``, so a redelivered refusal keeps it."""
    cause = event.envelope
    return MailFailed(
        envelope=Envelope(
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ecpds-mail-failed:{mail.message_id}")),
            occurred_at=now,
            source=source,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
        ),
        destination=str(getattr(event, "destination", "")),
        transfer_id=getattr(event, "transfer_id", None),
        rule=mail.rule,
        recipients=mail.to,
        mail_id=mail.message_id,
        subject=mail.subject,
        error_class=error_class,
        message=mask(reason),
    )


def _late(e: TransferLate) -> Text:
    product = f"{e.stream}/{e.time}/{e.step}/{e.type}"
    what = "arrival" if e.measure.value == "ARRIVAL" else "transfer"
    lateness = e.lateness.value.replace("_", " ").lower()
    subject = f"{PREFIX} {e.destination}: {product} {what} {lateness}"
    pairs: list[tuple[str, object]] = [
        ("Destination", e.destination),
        ("Product", product),
        ("Cycle (UTC)", e.base_time.strftime("%Y-%m-%d %H:%M")),
        ("Measure", what),
        ("Lateness", lateness),
        ("Predicted (UTC)", e.predicted_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("Late by", f"{e.late_by_ms // 60000} min"),
    ]
    if e.target_at is not None:
        pairs.append(("Target (UTC)", e.target_at.strftime("%Y-%m-%d %H:%M:%S")))
    if e.observed_at is not None:
        pairs.append(("Observed (UTC)", e.observed_at.strftime("%Y-%m-%d %H:%M:%S")))
    else:
        pairs.append(("Observed", "not yet"))
    if e.transfer_id is not None:
        pairs.append(("Transfer id", e.transfer_id))
    return subject, subject, _lines(pairs)
