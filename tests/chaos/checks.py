"""What the fault suites check after a case, one home for each (``make chaos`` and
``make test-cluster``): every transfer of the case delivered within a bound (held destinations
restarted as an operator would), the servers' contents against what was sent (missing, corrupt,
litter, written twice), where undelivered transfers are stuck, and the read models against a
rebuild from the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from aiokafka import AIOKafkaConsumer

from bus.events import envelope
from bus.events.base import DestinationStatus
from bus.events.requests import RestartRequested
from bus.events.transfers import DestinationStatusChanged, TransferQueued, TransferSucceeded
from bus.feeds import partitions_of
from bus.publisher import Publisher
from bus.settings import Settings
from projections.db import DEFAULT_SCHEMA
from projections.projector import DEFAULT_NAME
from projections.rebuild import ecpds_topics, rebuild
from tests.chaos.conftest import World
from tests.chaos.load import Load
from tests.chaos.world import Destination
from tests.projections.support import snapshot, wait_caught_up

HEARTBEATS = "ecpds.movers"  # a topic written without pause (see ``comparable``)
LITTER: set[str] = set()  # every leftover seen so far ("destination/name")


async def log_ends(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """The last offset of every non-empty partition of ``topics`` ("topic/partition")."""
    partitions = await partitions_of(bootstrap, topics)
    assert partitions, f"no partitions found for {topics}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {f"{tp.topic}/{tp.partition}": end - 1 for tp, end in ends.items() if end > 0}
    finally:
        await consumer.stop()


def comparable(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    """A snapshot without what the movers' heartbeats keep changing."""
    kept = {name: rows for name, rows in tables.items() if name != "movers"}
    kept["projection_position"] = [
        row for row in kept.get("projection_position", []) if HEARTBEATS not in row
    ]
    return kept


async def rebuild_equals_live(world: World) -> bool:
    """Once the live projector has caught up with the log, a rebuild gives the same rows."""
    settings = replace(
        Settings.from_env(), kafka_bootstrap=world.infra.bootstrap, pg_dsn=world.infra.dsn
    )
    topics = [t for t in await ecpds_topics(world.infra.bootstrap) if t != HEARTBEATS]
    deadline = time.monotonic() + 90
    while True:
        ends = await log_ends(world.infra.bootstrap, topics)
        await wait_caught_up(world.infra.dsn, DEFAULT_SCHEMA, DEFAULT_NAME, ends, 90)
        before = comparable(await snapshot(world.infra.dsn, DEFAULT_SCHEMA))
        await rebuild(settings)
        after = comparable(await snapshot(world.infra.dsn, DEFAULT_SCHEMA))
        if before == after:
            return True
        # events that arrived meanwhile (a destination turning WAIT after its idle hold) make
        # the two differ for no fault of the projection: only a difference on a still log counts
        quiet = ends == await log_ends(world.infra.bootstrap, topics)
        if quiet or time.monotonic() > deadline:
            differing = sorted(t for t in before if before[t] != after.get(t))
            print(f"read models differ from a rebuild in {differing} (log still: {quiet})")
            return False


def queued_of(world: World, prefix: str) -> list[TransferQueued]:
    names = {d.name for d in world.destinations}
    return [
        e
        for e in world.tail.events
        if isinstance(e, TransferQueued)
        and e.destination in names
        and e.target.startswith(f"{prefix}-")
    ]


async def restart_held(world: World, since: float, restarted: set[str]) -> None:
    """What an operator does for a destination put on hold: restart it (once per case)."""
    for d in world.destinations:
        if d.name in restarted:
            continue
        changes = world.tail.of(DestinationStatusChanged, d.name)
        last = changes[-1] if changes else None
        if last is None or last.new_status is not DestinationStatus.HOLD:
            continue
        if last.envelope.occurred_at.timestamp() < since:
            continue
        restarted.add(d.name)
        request = RestartRequested(
            envelope=envelope("chaos-operator", d.name), destination=d.name, requested_by="chaos"
        )
        async with Publisher(world.infra.bootstrap) as publisher:
            await publisher.publish(world.stack.topic("transfers"), d.name, request)


async def delivered_by(
    world: World, load: Load, prefix: str, since: float, recovery: float
) -> tuple[float, set[str]]:
    """Wait until every transfer of the case succeeded; when it was (monotonic) and the
    transfers still not delivered ``recovery`` s on, with held destinations restarted."""
    deadline = time.monotonic() + recovery
    restarted: set[str] = set()
    while True:
        done = {e.transfer_id for e in world.tail.events if isinstance(e, TransferSucceeded)}
        wanted = {e.transfer_id for e in queued_of(world, prefix)}
        wanted |= {i for s in load.sent for i in s.transfer_ids}
        missing = wanted - done
        if not missing:
            return time.monotonic(), set()
        if time.monotonic() > deadline:
            return time.monotonic(), missing
        await restart_held(world, since, restarted)
        await asyncio.sleep(0.25)


def at_servers(world: World, load: Load, known: set[str]) -> dict[str, int]:
    """Compare the servers' contents with what was sent: missing, corrupt, litter (any name
    that no file of the load has) new in this case, and litter in all (older litter stays
    counted there until something removes it)."""
    by_dest: dict[str, dict[str, str]] = {}
    for s in load.sent:
        by_dest.setdefault(s.destination, {})[s.target] = s.sha256
    counts = Counter[str]()
    whole: list[tuple[Destination, str, int]] = []
    for d in world.destinations:
        arrived = d.arrived(world.servers)
        for target, digest in by_dest.get(d.name, {}).items():
            if target not in arrived:
                counts["missing"] += 1
            elif hashlib.sha256(arrived[target]).hexdigest() != digest:
                counts["corrupt"] += 1
            else:
                whole.append((d, target, len(arrived[target])))
        litter = {f"{d.name}/{name}" for name in arrived if name not in known}
        new = litter - LITTER
        LITTER.update(new)
        counts["litter"] += len(new)
        counts["litter_total"] += len(litter)
        if new:
            print(f"{d.name}: left behind {sorted(new)[:5]}")
    writes = world.servers.written(whole)
    twice = [
        f"{d.name}/{target} x{n}" for (d, target, _), n in zip(whole, writes, strict=True) if n > 1
    ]
    if twice:
        print(f"written more than once at the servers: {twice[:5]}")
    counts["written_twice"] = len(twice)
    counts["unseen_writes"] = sum(1 for n in writes if n == 0)  # a watch that missed them
    keys = ("missing", "corrupt", "litter", "litter_total", "written_twice", "unseen_writes")
    return {k: counts[k] for k in keys}


ENDED = ("TransferStopped", "TransferAbandoned", "TransferExpired")  # no retry will follow


def stuck(world: World, missing: set[str]) -> dict[str, int]:
    """Where the undelivered transfers are: their last event (and its reason or error class),
    counted; the first few stories are printed as evidence."""
    last: dict[str, str] = {}
    stories: dict[str, list[str]] = {}
    for event in world.tail.events:
        tid = getattr(event, "transfer_id", None)
        if tid in missing:
            why = getattr(event, "reason", None) or getattr(event, "error_class", None)
            line = type(event).__name__ + (f" ({why})" if why else "")
            last[tid] = line
            stories.setdefault(tid, []).append(line)
    for tid in sorted(stories)[:3]:
        print(f"undelivered {tid}: {' -> '.join(stories[tid])}")
    return dict(Counter(last.get(t, "never queued") for t in missing))


async def restart_exited(world: World, names: Iterable[str]) -> dict[str, int]:
    """Start again, as the supervisor does, each of ``names`` that died on its own (or is not
    running); their exit codes."""
    exited = {n: code for n, code in world.stack.alive().items() if code is not None}
    for name in exited:  # why it died, before its restart appends to the same log
        print(
            f"{name} exited {exited[name]}:\n" + "\n".join(world.stack.log(name).splitlines()[-25:])
        )
    for name in names:
        if name not in world.stack.processes or name in exited:
            world.stack.processes.pop(name, None)
            await asyncio.to_thread(world.stack.start, name)
    return exited


def held_since(world: World, since: float) -> list[str]:
    """The destinations put on hold at or after ``since`` (epoch seconds)."""
    return [
        d.name
        for d in world.destinations
        if any(
            e.new_status is DestinationStatus.HOLD and e.envelope.occurred_at.timestamp() >= since
            for e in world.tail.of(DestinationStatusChanged, d.name)
        )
    ]
