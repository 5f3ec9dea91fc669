"""Operator requests from the command line: hold, restart, stop, requeue, priority, lifetime,
release standby, host on/off and host priority, for a destination, a transfer or a host.

Rule kept here (as in the monitor): the CLI only publishes the request event on
``ecpds.transfers`` keyed by destination, with the operator as ``requested_by``, built by
``bus.requests.build`` (the builder the monitor and its REST API use); the scheduler answers
with the resulting events (their causation id names the request), or with
``RequestDeclined`` and the reason when there was nothing to do. By default the command waits
a few seconds for that answer and prints it, so the operator sees what happened. Exit codes:
0 done, 1 nothing to do (declined), 2 refused before anything was published (a bad field, an
unknown destination), 3 no answer within ``--wait`` (is the scheduler running?).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.markup import escape

from bus import codec
from bus.errors import DecodeError
from bus.events import Event
from bus.events.transfers import RequestDeclined
from bus.kafka_access import kafka_options
from bus.publisher import Publisher
from bus.requests import Action, Verb, build, lifetime_expiry
from bus.topics import CONFIG, TRANSFERS
from cli.config import destination_app, host_app
from cli.credentials import operator
from cli.terminal import actor, console, read_config, refuse, run, run_sync, settings

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
DECLINED = 1  # exit code: the scheduler found nothing to do
NO_ANSWER = 3  # exit code: nothing answered within --wait


def ask(action: Action, topic: str, wait: float) -> None:
    """Publish the request ``action`` asks for, keyed by its destination, and unless ``wait``
    is 0 print the answer; a request that cannot be asked is refused (exit 2) unpublished, one
    the scheduler declines exits 1, one nobody answers exits 3."""
    event = run_sync(lambda: build(action, SOURCE))
    answers = run(lambda: _request(event, action.destination, topic, wait))
    if answers is None:
        return
    if not answers:
        raise typer.Exit(NO_ANSWER)
    if all(isinstance(a, RequestDeclined) for a in answers):
        raise typer.Exit(DECLINED)


async def _request(event: Event, destination: str, topic: str, wait: float) -> list[Event] | None:
    found = settings()
    operator(found)  # refused (exit 2) before anything is published
    bootstrap = found.kafka_bootstrap
    async with Publisher(bootstrap, client_id="ecpds-cli") as publisher:
        published = await publisher.publish(topic, destination, event)
    name = type(event).__name__
    console.print(f"requested: {name} [dim]{event.envelope.event_id}[/dim]")
    if wait <= 0:
        return None
    answers = await _answers(
        bootstrap,
        TopicPartition(published.topic, published.partition),
        published.offset + 1,
        event.envelope.event_id,
        wait,
    )
    if not answers:
        console.print(f"[red]no answer within {wait:g}s[/red]: is the scheduler running?")
    for answer in answers:
        if isinstance(answer, RequestDeclined):
            console.print(f"[yellow]nothing to do:[/yellow] {escape(answer.reason)}")
        else:
            console.print(f"  {escape(_describe(answer))}")
    return answers


async def _answers(
    bootstrap: str, tp: TopicPartition, offset: int, request_id: str, wait: float
) -> list[Event]:
    """The events caused by the request, read from its partition (answers are keyed by the
    same destination) until the first ones arrive and a short quiet spell follows."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **kafka_options(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
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
    view = run(lambda: read_config(config_topic))
    names = [d for d in view.destinations if transfer_id.endswith(f"-{d}")]
    if not names:
        refuse(f"transfer: no destination found for {transfer_id}; give --destination")
    return max(names, key=len)


# --- destinations -----------------------------------------------------------------------------


def _known(destination: str, config_topic: str) -> str:
    """``destination`` if it is configured; else refused (exit 2), since the scheduler never
    visits a destination it does not know and the request would wait for nobody."""
    run_sync(lambda: operator(settings()))  # a token that may not publish is refused first
    view = run(lambda: read_config(config_topic))
    if destination not in view.destinations:
        refuse(f"destination: no destination named {destination!r}")
    return destination


def _destination_verb(verb: Verb, doc: str) -> None:
    """Register ``ecpds destination VERB NAME``."""

    def command(
        name: str,
        reason: Reason = None,
        wait: Wait = 10,
        topic: TransfersTopic = TRANSFERS,
        config_topic: ConfigTopic = CONFIG,
    ) -> None:
        ask(Action(verb, _known(name, config_topic), actor(), reason=reason), topic, wait)

    command.__doc__ = doc
    destination_app.command(verb.value)(command)


def _destination_verb_now(verb: Verb, doc: str) -> None:
    """Register ``ecpds destination VERB NAME [--immediate]``."""

    def command(
        name: str,
        immediate: Immediate = False,
        reason: Reason = None,
        wait: Wait = 10,
        topic: TransfersTopic = TRANSFERS,
        config_topic: ConfigTopic = CONFIG,
    ) -> None:
        dest = _known(name, config_topic)
        ask(Action(verb, dest, actor(), reason=reason, immediate=immediate), topic, wait)

    command.__doc__ = doc
    destination_app.command(verb.value)(command)


_destination_verb_now(
    Verb.HOLD,
    "Put a destination on hold (graceful: running transfers finish; --immediate: interrupted).",
)
_destination_verb_now(
    Verb.RESTART, "Restart a destination from its primary host (--immediate interrupts what runs)."
)
_destination_verb(Verb.STOP, "Stop a destination (running transfers are interrupted).")
_destination_verb(Verb.REQUEUE_FAILED, "Requeue every failed or stopped transfer of a destination.")
_destination_verb(Verb.RELEASE, "Release every standby (held) transfer of a destination.")


# --- transfers --------------------------------------------------------------------------------


def _transfer_action(
    verb: Verb,
    transfer_id: str,
    destination: str | None,
    config_topic: str,
    reason: str | None,
    *,
    immediate: bool = False,
    priority: int | None = None,
    expiry_time: datetime | None = None,
) -> Action:
    """The request for one transfer, its destination found from its id unless given."""
    return Action(
        verb,
        _destination_of(transfer_id, destination, config_topic),
        actor(),
        transfer_id=transfer_id,
        reason=reason,
        immediate=immediate,
        priority=priority,
        expiry_time=expiry_time,
    )


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
    action = _transfer_action(
        Verb.HOLD, transfer_id, destination, config_topic, reason, immediate=immediate
    )
    ask(action, topic, wait)


def _transfer_verb(verb: Verb, doc: str) -> None:
    """Register ``ecpds transfer VERB TRANSFER_ID``."""

    def command(
        transfer_id: Transfer,
        destination: DestinationOpt = None,
        reason: Reason = None,
        wait: Wait = 10,
        topic: TransfersTopic = TRANSFERS,
        config_topic: ConfigTopic = CONFIG,
    ) -> None:
        ask(_transfer_action(verb, transfer_id, destination, config_topic, reason), topic, wait)

    command.__doc__ = doc
    transfer_app.command(verb.value)(command)


_transfer_verb(
    Verb.RESTART, "Restart a transfer (a running attempt is interrupted and ordered again)."
)
_transfer_verb(Verb.STOP, "Stop a transfer (STOP).")
_transfer_verb(
    Verb.REQUEUE, "Requeue a transfer (fresh start count; a running one after its attempt ends)."
)
_transfer_verb(Verb.RELEASE, "Release a standby (held) transfer into the queue.")


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
    action = _transfer_action(
        Verb.PRIORITY, transfer_id, destination, config_topic, reason, priority=priority
    )
    ask(action, topic, wait)


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
    expiry = run_sync(lambda: lifetime_expiry(lifetime, datetime.now(UTC)))
    action = _transfer_action(
        Verb.EXTEND, transfer_id, destination, config_topic, reason, expiry_time=expiry
    )
    ask(action, topic, wait)


# --- hosts of a destination -------------------------------------------------------------------

HostId = Annotated[str, typer.Argument(metavar="HOST_ID")]
ForDestination = Annotated[
    str, typer.Option("--destination", "-d", help="the destination whose host it is")
]


def _host_switch(name: str, verb: Verb, doc: str) -> None:
    """Register ``ecpds host NAME HOST_ID --destination D``."""

    def command(
        host_id: HostId,
        destination: ForDestination,
        reason: Reason = None,
        wait: Wait = 10,
        topic: TransfersTopic = TRANSFERS,
    ) -> None:
        ask(Action(verb, destination, actor(), host_id=host_id, reason=reason), topic, wait)

    command.__doc__ = doc
    host_app.command(name)(command)


_host_switch("activate", Verb.HOST_ON, "Put a host back in use for a destination.")
_host_switch(
    "deactivate",
    Verb.HOST_OFF,
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
    action = Action(
        Verb.HOST_PRIORITY, destination, actor(), host_id=host_id, priority=priority, reason=reason
    )
    ask(action, topic, wait)
