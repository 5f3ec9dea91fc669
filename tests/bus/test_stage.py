"""The stage kit's contract, once, against the real Kafka broker: order per partition, retry of
a retriable failure, dead letters (undecodable, not allowed, failing for good), outcome events,
the commit rule across a restart, and stopping on SIGTERM and SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from bus import codec
from bus.errors import PermanentError, TransientError
from bus.events import envelope
from bus.events.deadletter import DeadLettered, DeadLetterReason
from bus.events.movers import MoverHeartbeat
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import ROOT
from bus.stage import Publish, Received, Rejected, Stage, until_signalled
from bus.topics import DAY_MS, TopicSpec, apply_topics
from tests.bus.deadletters import GARBAGE, dead_letters, publish_poison
from tests.bus.test_kafka import heartbeat
from tests.conftest import eventually
from tests.ingest.conftest import read_topic

pytestmark = pytest.mark.kafka

FAST = RetryPolicy(initial=0.05, maximum=0.2)


@dataclass(frozen=True)
class Topics:
    """One test's input, outcome and dead-letter topics."""

    input: str
    outcomes: str
    deadletter: str
    specs: tuple[TopicSpec, ...]


@pytest.fixture
async def topics(kafka: str, unique: str) -> Topics:
    names = (f"test.{unique}.movers", f"test.{unique}.outcomes", f"test.{unique}.deadletter")
    specs = (
        TopicSpec(names[0], "mover id", 2, "delete", DAY_MS, ("ecpds.movers",), "input"),
        TopicSpec(names[1], "mover id", 1, "delete", DAY_MS, ("ecpds.movers",), "outcomes"),
        TopicSpec(names[2], "origin", 1, "delete", DAY_MS, ("ecpds.deadletter",), "dead"),
    )
    await apply_topics(kafka, list(specs))
    return Topics(*names, specs)


@pytest.fixture
async def publisher(kafka: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka, client_id="stage-test") as pub:
        yield pub


Rule = Callable[[Received], BaseException | None]


def never(_: Received) -> BaseException | None:
    return None


@dataclass
class Recorder:
    """A handler that records what it handled and fails as ``rule`` says."""

    rule: Rule = never
    outcomes: str | None = None  # when set, each handled heartbeat is published there again
    seen: list[Received] = field(default_factory=list)
    attempts: list[Received] = field(default_factory=list)

    async def handle(self, received: Received) -> Sequence[Publish]:
        self.attempts.append(received)
        error = self.rule(received)
        if error is not None:
            raise error
        self.seen.append(received)
        if self.outcomes is None:
            return ()
        event = received.event
        assert isinstance(event, MoverHeartbeat)
        return (Publish(self.outcomes, event.mover_id, event),)

    def movers(self) -> list[str]:
        return [getattr(r.event, "mover_id") for r in self.seen]  # noqa: B009


def stage(
    kafka: str, topics: Topics, group: str, handler: Recorder, **kw: object
) -> Stage[Recorder]:
    return Stage(
        handler,
        bootstrap=kafka,
        topics=[topics.input],
        group_id=group,
        source="stage-test",
        specs=topics.specs,
        retry=FAST,
        deadletter_topic=topics.deadletter,
        **kw,  # type: ignore[arg-type]
    )


async def running_until(
    job: Stage[Recorder], done: Callable[[], bool], timeout: float = 30
) -> None:
    task = asyncio.create_task(job.run())
    try:

        async def check() -> bool:
            assert not task.done(), task.exception()
            return done()

        await eventually(check, timeout)
    finally:
        job.stop()
        await asyncio.wait_for(task, 20)


async def test_records_of_a_partition_are_handled_in_order_and_outcomes_published(
    kafka: str, unique: str, topics: Topics, publisher: Publisher
) -> None:
    """Each partition's records are handled in offset order, each mover's events in the order
    published, and every outcome event is on its topic."""
    sent = [heartbeat(n, f"mover-{n % 5}") for n in range(40)]
    for event in sent:
        await publisher.publish(topics.input, event.mover_id, event)
    recorder = Recorder(outcomes=topics.outcomes)
    job = stage(kafka, topics, f"g-{unique}", recorder, max_records=7)
    await running_until(job, lambda: len(recorder.seen) >= 40)
    for partition in (0, 1):
        offsets = [r.offset for r in recorder.seen if r.partition == partition]
        assert offsets == sorted(offsets)
    for mover in {e.mover_id for e in sent}:
        handled = [r.event.envelope.event_id for r in recorder.seen if r.event.mover_id == mover]  # type: ignore[attr-defined]
        assert handled == [e.envelope.event_id for e in sent if e.mover_id == mover]
    published = [e for _, _, e in await read_topic(kafka, topics.outcomes)]
    assert sorted(e.envelope.event_id for e in published) == sorted(
        e.envelope.event_id for e in sent
    )
    assert (job.handled, job.dead_lettered, job.retries) == (40, 0, 0)


async def test_a_retriable_failure_is_retried_with_the_next_attempt_number_then_succeeds(
    kafka: str, unique: str, topics: Topics, publisher: Publisher
) -> None:
    """A handler failing retriably twice is called again (attempts 1, 2, 3) and succeeds; the
    record after it on its partition waits for it; nothing is dead-lettered."""
    await publisher.publish(topics.input, "same", heartbeat(1, "first"))
    await publisher.publish(topics.input, "same", heartbeat(2, "second"))

    def flaky(received: Received) -> BaseException | None:
        if getattr(received.event, "mover_id") == "first" and received.attempt <= 2:  # noqa: B009
            return TransientError("database restarting")
        return None

    recorder = Recorder(flaky)
    job = stage(kafka, topics, f"g-{unique}", recorder)
    await running_until(job, lambda: len(recorder.seen) >= 2)
    assert recorder.movers() == ["first", "second"]
    firsts = [r.attempt for r in recorder.attempts if getattr(r.event, "mover_id") == "first"]  # noqa: B009
    assert firsts == [1, 2, 3]
    assert (job.retries, job.dead_lettered) == (2, 0)
    assert await dead_letters(kafka, topics.deadletter, topics.input, f"g-{unique}") == []


async def test_poison_and_permanent_failures_are_dead_lettered_with_reason_origin_and_group(
    kafka: str, unique: str, topics: Topics, publisher: Publisher
) -> None:
    """Undecodable bytes, an unknown schema, a type not allowed, a handler failing for good and
    a handler rejecting a record each become one dead letter naming the reason, the origin and
    the group; the good record after them is handled."""
    key = b"k"
    garbage = await publish_poison(publisher, topics.input, key)
    unknown = await publisher.publish_raw(
        topics.input, key, b"\xc3\x01" + b"\x00" * 8 + b"\x02", []
    )
    letter_like = DeadLettered(
        envelope=envelope("test", "x"),
        reason=DeadLetterReason.UNDECODABLE,
        message="m",
        origin_topic="t",
        origin_partition=0,
        origin_offset=0,
    )
    wrong = await publisher.publish_raw(
        topics.input, key, codec.encode(letter_like), codec.headers(letter_like)
    )
    broken = await publisher.publish(topics.input, "k", heartbeat(1, "broken"))
    rejected = await publisher.publish(topics.input, "k", heartbeat(2, "rejected"))
    await publisher.publish(topics.input, "k", heartbeat(3, "good"))

    def rule(received: Received) -> BaseException | None:
        mover = getattr(received.event, "mover_id")  # noqa: B009
        if mover == "broken":
            return PermanentError("this event can never be applied")
        if mover == "rejected":
            return Rejected("policy cannot be met: no store left", error_class="NoStore")
        return None

    recorder = Recorder(rule)
    group = f"g-{unique}"
    job = stage(kafka, topics, group, recorder)
    await running_until(job, lambda: recorder.movers() == ["good"] and job.dead_lettered >= 5)
    letters = {
        d.origin_offset: d
        for d in await dead_letters(kafka, topics.deadletter, topics.input, group)
    }
    assert set(letters) == {p.offset for p in (garbage, unknown, wrong, broken, rejected)}
    assert letters[garbage.offset].reason == DeadLetterReason.UNDECODABLE
    assert letters[garbage.offset].original_value == GARBAGE
    assert letters[garbage.offset].original_key == key
    assert letters[unknown.offset].reason == DeadLetterReason.UNKNOWN_SCHEMA
    assert letters[wrong.offset].reason == DeadLetterReason.TYPE_NOT_ALLOWED
    assert letters[broken.offset].reason == DeadLetterReason.PERMANENT_FAILURE
    assert letters[broken.offset].error_class == "PermanentError"
    assert "can never be applied" in letters[broken.offset].message
    assert letters[rejected.offset].reason == DeadLetterReason.PERMANENT_FAILURE
    assert letters[rejected.offset].message == "policy cannot be met: no store left"
    assert letters[rejected.offset].error_class == "NoStore"
    assert letters[rejected.offset].event_type == "ecpds.movers.MoverHeartbeat"
    assert all(d.origin_partition == garbage.partition for d in letters.values())
    assert all(d.consumer_group == group for d in letters.values())


async def test_a_restart_reads_again_exactly_the_records_that_had_not_ended(
    kafka: str, unique: str, topics: Topics, publisher: Publisher
) -> None:
    """Stopped while a record keeps failing, the stage has committed its partition up to that
    record and the other partition to its end; the next run in the group reads exactly that
    record and the ones after it on its partition."""
    for n in range(12):
        await publisher.publish(topics.input, f"mover-{n}", heartbeat(n))
    placed = {(p, o): e for p, o, e in await read_topic(kafka, topics.input)}
    [(stuck_partition, stuck_offset)] = [
        at
        for at, e in placed.items()
        if getattr(e, "mover_id") == "mover-5"  # noqa: B009
    ]
    unfinished = {(p, o) for p, o in placed if p == stuck_partition and o >= stuck_offset}

    def stuck(received: Received) -> BaseException | None:
        if getattr(received.event, "mover_id") == "mover-5":  # noqa: B009
            return TransientError("never today")
        return None

    group = f"g-{unique}"
    first = Recorder(stuck)
    job = stage(kafka, topics, group, first)
    await running_until(job, lambda: job.retries >= 3 and job.handled >= 12 - len(unfinished))
    assert {(r.partition, r.offset) for r in first.seen} == set(placed) - unfinished

    after = Recorder()
    again = stage(kafka, topics, group, after)
    await running_until(again, lambda: len(after.seen) >= len(unfinished))
    await asyncio.sleep(0)  # stopped: nothing more can arrive
    assert sorted((r.partition, r.offset) for r in after.seen) == sorted(unfinished)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_stops_the_stage_and_its_handlers_are_removed(
    kafka: str, unique: str, topics: Topics, publisher: Publisher, sig: signal.Signals
) -> None:
    """SIGTERM or SIGHUP sent to the process stops a stage run with ``until_signalled``: the
    run returns, having committed what it handled, and the signal handlers are gone after."""
    await publisher.publish(topics.input, "k", heartbeat(1))
    recorder = Recorder()
    group = f"g-{unique}-{sig.name}"
    job = stage(kafka, topics, group, recorder)
    task = asyncio.create_task(until_signalled(job))
    await eventually(lambda: _true(len(recorder.seen) >= 1), 30)
    os.kill(os.getpid(), sig)
    await asyncio.wait_for(task, 20)
    assert asyncio.get_running_loop().remove_signal_handler(sig) is False  # none left
    again = Recorder()
    rerun = stage(kafka, topics, group, again)
    rerun_task = asyncio.create_task(rerun.run())
    # a record sent after the stop proves the rerun reads: then it saw only that one
    await publisher.publish(topics.input, "k", heartbeat(2))
    await eventually(lambda: _true(len(again.seen) >= 1), 30)
    rerun.stop()
    await asyncio.wait_for(rerun_task, 20)
    assert [r.event.mover_id for r in again.seen] == ["mover-2"]  # committed before stopping


async def test_records_run_concurrently_and_one_ended_behind_a_retry_is_not_handled_again(
    kafka: str, unique: str, topics: Topics, publisher: Publisher
) -> None:
    """With concurrency 4 the records of a partition run at once; the one after a retried
    record, ended already, is not handled again when its partition is read again; the fold sees
    every event of the batch, in order, before any is handled."""
    for n in range(6):
        await publisher.publish(topics.input, "same", heartbeat(n))
    folded: list[str] = []
    running = 0
    peak = 0

    class Slow(Recorder):
        async def handle(self, received: Received) -> Sequence[Publish]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await asyncio.sleep(0.3)
                return await super().handle(received)
            finally:
                running -= 1

    def flaky(received: Received) -> BaseException | None:
        if getattr(received.event, "mover_id") == "mover-2" and received.attempt == 1:  # noqa: B009
            return TransientError("once")
        return None

    recorder = Slow(flaky)
    job = stage(
        kafka,
        topics,
        f"g-{unique}",
        recorder,
        concurrency=4,
        fold=lambda e: folded.append(getattr(e, "mover_id")),  # noqa: B009
    )
    await running_until(job, lambda: len(recorder.seen) >= 6)
    assert peak == 4
    assert sorted(recorder.movers()) == [f"mover-{n}" for n in range(6)]  # each handled once
    assert [getattr(r.event, "mover_id") for r in recorder.attempts].count("mover-2") == 2  # noqa: B009
    assert folded[:6] == [f"mover-{n}" for n in range(6)]
    assert (job.handled, job.retries) == (6, 1)


async def test_a_rejection_publishes_what_was_done_then_dead_letters(
    kafka: str, unique: str, topics: Topics, publisher: Publisher
) -> None:
    """A handler that gives up after part of the work (Rejected with an outcome) has that
    outcome published and the record dead-lettered."""
    sent = heartbeat(1, "partial")
    await publisher.publish(topics.input, "k", sent)

    class Partial:
        async def handle(self, received: Received) -> Sequence[Publish]:
            done = Publish(topics.outcomes, "k", received.event)
            raise Rejected("1 of 2 copies made", error_class="NoStore", outcome=[done])

    group = f"g-{unique}"
    job: Stage[Partial] = Stage(
        Partial(),
        bootstrap=kafka,
        topics=[topics.input],
        group_id=group,
        source="stage-test",
        specs=topics.specs,
        deadletter_topic=topics.deadletter,
    )
    task = asyncio.create_task(job.run())
    try:
        await eventually(lambda: _true(job.dead_lettered >= 1), 30)
    finally:
        job.stop()
        await asyncio.wait_for(task, 20)
    [out] = [e for _, _, e in await read_topic(kafka, topics.outcomes)]
    assert out.envelope.event_id == sent.envelope.event_id
    [letter] = await dead_letters(kafka, topics.deadletter, topics.input, group)
    assert (letter.message, letter.error_class) == ("1 of 2 copies made", "NoStore")


STAGE_SCRIPT = """
import sys
from bus.stage import Stage, main, until_signalled

class Announce:
    async def handle(self, received):
        print("handled", flush=True)
        return ()

async def serve(settings, args):
    stage = Stage(Announce(), bootstrap=settings.kafka_bootstrap, topics=[args.topic],
                  group_id=args.group, source="signal-test")
    await until_signalled(stage)
    print("stopped", flush=True)

def options(parser, settings):
    parser.add_argument("--topic")
    parser.add_argument("--group")

main("signal-test", "a stage stopped by a signal", serve, sys.argv[1:], options=options)
"""


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT])
async def test_main_runs_a_stage_until_a_signal_and_exits_cleanly(
    kafka: str, unique: str, topics: Topics, publisher: Publisher, sig: signal.Signals
) -> None:
    """A stage command built with ``bus.stage.main``, in its own process, handles a record and
    exits with status 0 when sent SIGHUP (the terminal closed) or SIGINT (Ctrl-C)."""
    await publisher.publish(topics.input, "k", heartbeat(1))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STAGE_SCRIPT,
        "--topic",
        topics.input,
        "--group",
        f"g-{unique}-{sig.name}",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while "handled" not in lines:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, f"the stage exited: {lines}"
            lines.append(line.decode().strip())
        process.send_signal(sig)
        rest = await asyncio.wait_for(process.stdout.read(), 30)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "stopped" in rest.decode().splitlines()
