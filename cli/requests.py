"""Operator requests from the command line: hold, restart, stop, requeue, priority, lifetime,
release standby, host on/off and host priority, for a destination, a transfer or a host.

Rule kept here (as in the monitor): the CLI only publishes the request event on
``ecpds.transfers`` keyed by destination, with the operator as ``requested_by``; the scheduler
answers with the resulting events (their causation id names the request). By default the
command waits a few seconds for that answer and prints it, so the operator sees what happened
(or that nothing answered: no scheduler running, or a request that changed nothing).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.markup import escape

from bus import codec
from bus.config.durations import parse_duration
from bus.errors import ConfigurationError, DecodeError
from bus.events import Event, envelope
from bus.events import requests as r
from bus.publisher import Publisher
from bus.topics import CONFIG, TRANSFERS
from cli.config import _actor, _read, _run, _settings, console, destination_app, host_app

transfer_app = typer.Typer(
    no_args_is_help=True, help="Act on one transfer (hold, restart, stop, requeue, priority...)."
)

TransfersTopic = Annotated[
    str, typer.Option("--transfers-topic", hidden=True, help="transfers topic")
]
ConfigTopic = Annotated[str, typer.Option("--config-topic", hidden=True, help="config topic")]
Reason = Annotated[str | None, typer.Option("--reason", help="why (kept in the event log)")]
Immediate = Annotated[
    bool, typer.Option("--immediate", help="interrupt running transfers instead of waiting")
]
Wait = Annotated[
    float,
    typer.Option("--wait", help="seconds to wait for the scheduler's answer (0: do not wait)"),
]
DestinationOpt = Annotated[
    str | None,
    typer.Option("--destination", "-d", help="the transfer's destination (else from its id)"),
]
Transfer = Annotated[str, typer.Argument(metavar="TRANSFER_ID")]
SOURCE = "cli"


def request(event: Event, destination: str, topic: str, wait: float) -> None:
    """Publish ``event`` keyed by ``destination`` and, unless ``wait`` is 0, print the answer."""
    _run(lambda: _request(event, destination, topic, wait))


async def _request(event: Event, destination: str, topic: str, wait: float) -> None:
    settings = _settings()
    async with Publisher(settings.kafka_bootstrap, client_id="ecpds-cli") as publisher:
        published = await publisher.publish(topic, destination, event)
    name = type(event).__name__
    console.print(f"requested: {name} [dim]{event.envelope.event_id}[/dim]")
    if wait <= 0:
        return
    answers = await _answers(
        settings.kafka_bootstrap,
        TopicPartition(published.topic, published.partition),
        published.offset + 1,
        event.envelope.event_id,
        wait,
    )
    if not answers:
        console.print(
            f"[yellow]no answer within {wait:g}s[/yellow] (is the scheduler running? a request"
            " that changes nothing is not answered)"
        )
    for answer in answers:
        console.print(f"  {escape(_describe(answer))}")


async def _answers(
    bootstrap: str, tp: TopicPartition, offset: int, request_id: str, wait: float
) -> list[Event]:
    """The events caused by the request, read from its partition (answers are keyed by the
    same destination) until the first ones arrive and a short quiet spell follows."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[Event] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=300)
            records = batch.get(tp, [])
            if not records and found:
                break  # the answer came and nothing more followed
            for record in records:
                try:
                    event = codec.decode(record.value or b"")
                except DecodeError:
                    continue
                if event.envelope.causation_id == request_id:
                    found.append(event)
    finally:
        await consumer.stop()
    return found


def _describe(event: Event) -> str:
    fields = {"transfer_id", "new_status", "status", "reason", "host_id", "new_priority"}
    parts = [
        f"{k}={getattr(event, k)}" for k in sorted(fields) if getattr(event, k, None) is not None
    ]
    return f"{type(event).__name__} {' '.join(parts)}".strip()


def _destination_of(transfer_id: str, given: str | None, config_topic: str) -> str:
    """The destination a transfer belongs to: as given, or the configured destination its id
    ends with (transfer ids are ``<data file id>-<destination>``)."""
    if given:
        return given
    view = _run(lambda: _read(config_topic))
    names = [d for d in view.destinations if transfer_id.endswith(f"-{d}")]
    if not names:
        console.print(
            f"[red]refused:[/red] transfer: no destination found for {escape(transfer_id)};"
            " give --destination"
        )
        raise typer.Exit(2)
    return max(names, key=len)


# --- destinations -----------------------------------------------------------------------------


@destination_app.command("hold")
def destination_hold(
    name: str,
    immediate: Immediate = False,
    reason: Reason = None,
    wait: Wait = 10,
    topic: TransfersTopic = TRANSFERS,
) -> None:
    """Put a destination on hold (graceful: running transfers finish; --immediate: interrupted)."""
    event = r.HoldRequested(
        envelope=envelope(SOURCE, name),
        destination=name,
        immediate=immediate,
        requested_by=_actor(),
        reason=reason,
    )
    request(event, name, topic, wait)


@destination_app.command("restart")
def destination_restart(
    name: str,
    immediate: Immediate = False,
    reason: Reason = None,
    wait: Wait = 10,
    topic: TransfersTopic = TRANSFERS,
) -> None:
    """Restart a destination from its primary host (--immediate interrupts what runs)."""
    event = r.RestartRequested(
        envelope=envelope(SOURCE, name),
        destination=name,
        immediate=immediate,
        requested_by=_actor(),
        reason=reason,
    )
    request(event, name, topic, wait)


DestinationRequest = type[r.StopRequested | r.RequeueFailedRequested | r.StandbyReleaseRequested]


def _destination_verb(verb: str, cls: DestinationRequest, doc: str) -> None:
    """Register ``ecpds destination VERB NAME``, which publishes a ``cls`` request."""

    def command(
        name: str, reason: Reason = None, wait: Wait = 10, topic: TransfersTopic = TRANSFERS
    ) -> None:
        event = cls(
            envelope=envelope(SOURCE, name), destination=name, requested_by=_actor(), reason=reason
        )
        request(event, name, topic, wait)

    command.__doc__ = doc
    destination_app.command(verb)(command)


_destination_verb(
    "stop", r.StopRequested, "Stop a destination (running transfers are interrupted)."
)
_destination_verb(
    "requeue-failed",
    r.RequeueFailedRequested,
    "Requeue every failed or stopped transfer of a destination.",
)
_destination_verb(
    "release", r.StandbyReleaseRequested, "Release every standby (held) transfer of a destination."
)


# --- transfers --------------------------------------------------------------------------------


def _transfer_verb(
    cls: type[r.HoldRequested]
    | type[r.RestartRequested]
    | type[r.StopRequested]
    | type[r.RequeueRequested]
    | type[r.StandbyReleaseRequested],
    transfer_id: str,
    destination: str | None,
    reason: str | None,
    wait: float,
    topic: str,
    config_topic: str,
    **extra: object,
) -> None:
    dest = _destination_of(transfer_id, destination, config_topic)
    event = cls(
        envelope=envelope(SOURCE, transfer_id),
        destination=dest,
        transfer_id=transfer_id,
        requested_by=_actor(),
        reason=reason,
        **extra,  # type: ignore[arg-type]
    )
    request(event, dest, topic, wait)


@transfer_app.command("hold")
def transfer_hold(
    transfer_id: Transfer,
    destination: DestinationOpt = None,
    immediate: Immediate = False,
    reason: Reason = None,
    wait: Wait = 10,
    topic: TransfersTopic = TRANSFERS,
    config_topic: ConfigTopic = CONFIG,
) -> None:
    """Hold a transfer (a running one at the end of its attempt, or at once with --immediate)."""
    _transfer_verb(
        r.HoldRequested,
        transfer_id,
        destination,
        reason,
        wait,
        topic,
        config_topic,
        immediate=immediate,
    )


TransferRequest = type[
    r.RestartRequested | r.StopRequested | r.RequeueRequested | r.StandbyReleaseRequested
]


def _simple_transfer_verb(verb: str, cls: TransferRequest, doc: str) -> None:
    """Register ``ecpds transfer VERB TRANSFER_ID``, which publishes a ``cls`` request."""

    def command(
        transfer_id: Transfer,
        destination: DestinationOpt = None,
        reason: Reason = None,
        wait: Wait = 10,
        topic: TransfersTopic = TRANSFERS,
        config_topic: ConfigTopic = CONFIG,
    ) -> None:
        _transfer_verb(cls, transfer_id, destination, reason, wait, topic, config_topic)

    command.__doc__ = doc
    transfer_app.command(verb)(command)


for _verb, _cls, _doc in (
    (
        "restart",
        r.RestartRequested,
        "Restart a transfer (a running attempt is interrupted and ordered again).",
    ),
    ("stop", r.StopRequested, "Stop a transfer (STOP)."),
    (
        "requeue",
        r.RequeueRequested,
        "Requeue a transfer (fresh start count; a running one after its attempt ends).",
    ),
    ("release", r.StandbyReleaseRequested, "Release a standby (held) transfer into the queue."),
):
    _simple_transfer_verb(_verb, _cls, _doc)


@transfer_app.command("priority")
def transfer_priority(
    transfer_id: Transfer,
    priority: Annotated[int, typer.Argument(min=0, max=99, help="0 (first) to 99")],
    destination: DestinationOpt = None,
    reason: Reason = None,
    wait: Wait = 10,
    topic: TransfersTopic = TRANSFERS,
    config_topic: ConfigTopic = CONFIG,
) -> None:
    """Change a transfer's priority (lower goes first)."""
    dest = _destination_of(transfer_id, destination, config_topic)
    event = r.PriorityChangeRequested(
        envelope=envelope(SOURCE, transfer_id),
        destination=dest,
        transfer_id=transfer_id,
        priority=priority,
        requested_by=_actor(),
        reason=reason,
    )
    request(event, dest, topic, wait)


@transfer_app.command("extend")
def transfer_extend(
    transfer_id: Transfer,
    lifetime: Annotated[
        str, typer.Option("--lifetime", help="new lifetime from now: 2d, 12h, PT6H")
    ],
    destination: DestinationOpt = None,
    reason: Reason = None,
    wait: Wait = 10,
    topic: TransfersTopic = TRANSFERS,
    config_topic: ConfigTopic = CONFIG,
) -> None:
    """Extend a transfer's lifetime (its new expiry is now + LIFETIME)."""
    try:
        ms = parse_duration(lifetime, "lifetime")
    except ConfigurationError as error:
        console.print(f"[red]refused:[/red] {escape(error.field)}: {escape(error.reason)}")
        raise typer.Exit(2) from None
    dest = _destination_of(transfer_id, destination, config_topic)
    event = r.LifetimeExtensionRequested(
        envelope=envelope(SOURCE, transfer_id),
        destination=dest,
        transfer_id=transfer_id,
        expiry_time=datetime.now(UTC) + timedelta(milliseconds=ms),
        requested_by=_actor(),
        reason=reason,
    )
    request(event, dest, topic, wait)


# --- hosts of a destination -------------------------------------------------------------------

HostId = Annotated[str, typer.Argument(metavar="HOST_ID")]
ForDestination = Annotated[
    str, typer.Option("--destination", "-d", help="the destination whose host it is")
]


HostSwitch = type[r.HostActivationRequested | r.HostDeactivationRequested]


def _host_switch(verb: str, cls: HostSwitch, doc: str) -> None:
    """Register ``ecpds host VERB HOST_ID --destination D``, which publishes a ``cls`` request."""

    def command(
        host_id: HostId,
        destination: ForDestination,
        reason: Reason = None,
        wait: Wait = 10,
        topic: TransfersTopic = TRANSFERS,
    ) -> None:
        event = cls(
            envelope=envelope(SOURCE, host_id),
            destination=destination,
            host_id=host_id,
            requested_by=_actor(),
            reason=reason,
        )
        request(event, destination, topic, wait)

    command.__doc__ = doc
    host_app.command(verb)(command)


_host_switch("activate", r.HostActivationRequested, "Put a host back in use for a destination.")
_host_switch(
    "deactivate",
    r.HostDeactivationRequested,
    "Take a host out of use for a destination (the next host takes over).",
)


@host_app.command("priority")
def host_priority(
    host_id: HostId,
    priority: Annotated[int, typer.Argument(min=0, help="lower is tried first")],
    destination: ForDestination,
    reason: Reason = None,
    wait: Wait = 10,
    topic: TransfersTopic = TRANSFERS,
) -> None:
    """Change the priority of a host within a destination's host list."""
    event = r.HostPriorityChangeRequested(
        envelope=envelope(SOURCE, host_id),
        destination=destination,
        host_id=host_id,
        priority=priority,
        requested_by=_actor(),
        reason=reason,
    )
    request(event, destination, topic, wait)
