"""Projection of ``ecpds.notifications``: each published, failed or refused (a WIS2 rule
broken: never sent) notification, and its place in the transfer's timeline; a mail refused for
good (``MailFailed``) takes its place in the timeline of the transfer it was about, beside the
notifications (a mail about the destination itself has no transfer: the event stays in the log,
with no row; so does a notification of lateness with no transfer)."""

from __future__ import annotations

from collections.abc import Sequence

from bus.events import Event
from bus.events import notifications as n
from projections.handlers.base import FREE, Handler, Write, registrar
from projections.handlers.timeline import history

HANDLERS: dict[str, Handler] = {}
on = registrar(HANDLERS, {"notifications": FREE, "transfer_history": FREE})

_NOTIFICATION = (
    "INSERT INTO notifications (event_id, occurred_at, ok, destination, transfer_id,"
    " data_file_id, topic, qos, retain, payload_size, broker, message_id, data_id, error_class,"
    " message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)


def _timeline(event: Event, transfer_id: str, destination: str, message: str) -> tuple[Write, ...]:
    """The notification's row in its transfer's timeline; none without a transfer (a
    destination's lateness of a product not arrived yet)."""
    return (history(event, transfer_id, destination, message=message),) if transfer_id else ()


@on(n.NotificationPublished)
def _published(event: n.NotificationPublished) -> Sequence[Write]:
    env = event.envelope
    return (
        Write(
            _NOTIFICATION,
            (
                env.event_id,
                env.occurred_at,
                True,
                event.destination,
                event.transfer_id,
                event.data_file_id,
                event.topic,
                event.qos,
                event.retain,
                event.payload_size,
                event.broker,
                event.message_id,
                event.data_id,
                None,
                None,
            ),
        ),
        *_timeline(event, event.transfer_id, event.destination, f"notified on {event.topic}"),
    )


@on(n.NotificationFailed)
def _failed(event: n.NotificationFailed) -> Sequence[Write]:
    env = event.envelope
    error = f"{event.error_class}: {event.message}"
    return (
        Write(
            _NOTIFICATION,
            (
                env.event_id,
                env.occurred_at,
                False,
                event.destination,
                event.transfer_id,
                None,
                event.topic,
                None,
                None,
                None,
                None,
                None,
                None,
                event.error_class,
                event.message,
            ),
        ),
        *_timeline(event, event.transfer_id, event.destination, error),
    )


@on(n.NotificationRefused)
def _refused(event: n.NotificationRefused) -> Sequence[Write]:
    env = event.envelope
    return (
        Write(
            _NOTIFICATION,
            (
                env.event_id,
                env.occurred_at,
                False,
                event.destination,
                event.transfer_id,
                event.data_file_id or None,
                event.topic,
                None,
                None,
                None,
                None,
                event.message_id,
                event.data_id,
                "NotificationRefused",
                event.reason,
            ),
        ),
        history(
            event,
            event.transfer_id,
            event.destination,
            message=f"WIS2 notification refused, not sent: {event.reason}",
        ),
    )


@on(n.MailFailed)
def _mail_failed(event: n.MailFailed) -> Sequence[Write]:
    if event.transfer_id is None:
        return ()
    to = ", ".join(event.recipients)
    message = f"mail refused for good ({event.rule} to {to}): {event.error_class}: {event.message}"
    return (history(event, event.transfer_id, event.destination, message=message),)
