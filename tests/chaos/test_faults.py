"""Delivery safety under faults (issue 13, ``make chaos``): a steady load while one fault at a
time is injected, then every file is accounted for.

Each case: files are POSTed at ``RATE`` per second round robin to ten destinations (SFTP,
FTP, S3); ``PRE`` seconds in, the fault begins; it lasts its ``seconds`` and ends (the process
restarted, the server back, the proxy clean); the load goes on ``POST`` more seconds. Then,
within ``RECOVERY`` seconds, every registered transfer of the case must succeed, and:

- every file is at its destination under its target name with the sha256 of the bytes put;
- nothing twice: no file written twice at its server (``tests.chaos.writes`` counts the
  writes where they happen: a second ``TransferSucceeded`` in the log may be the same record
  again or a ``FOUND_*`` confirmation, which wrote nothing; both are counted and reported),
  no target registered twice;
- no temporary file left at any destination (any name that is not a target of the load);
- the read models equal a rebuild from the log (``projections.rebuild``; the movers'
  heartbeat table is left out: heartbeats never stop, so it cannot be compared at rest);
- the recovery time (fault end -> last file of the case delivered) is measured.

A JSON summary per fault is printed and written to ``var/chaos/results.json``. A file written
twice, a duplicate registration, a temporary file left, a host's error that ended transfers
instead of holding the destination, a 500 or an unanswered put, a corrupt file, a file the
API never accepted, a file neither delivered nor ended within ``RECOVERY`` (stuck: its last
event is reported), or a read model that differs from a rebuild fails the case.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
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
from tests.chaos.conftest import CHAOS_VAR, COMPONENTS, World, succeeded
from tests.chaos.faults import FAULTS, Fault
from tests.chaos.load import Load
from tests.chaos.world import Destination
from tests.projections.support import snapshot, wait_caught_up

pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.postgres]

RATE = 20.0  # files per second, over the ten destinations
PRE, POST = 2.0, 2.0  # seconds of load before the fault begins and after it ends
RECOVERY = 60.0  # bound on the time from the fault's end to the last file delivered
GIVE_UP = 90.0  # a client stops retrying one file after this long
RESULTS = CHAOS_VAR / "results.json"
HEARTBEATS = "ecpds.movers"  # a topic written without pause (see the module docstring)


# -- what is checked -----------------------------------------------------------------------------


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
    world: World, load: Load, prefix: str, since: float
) -> tuple[float, set[str]]:
    """Wait until every transfer of the case succeeded; when it was (monotonic) and the
    transfers still not delivered at the deadline, with held destinations restarted."""
    deadline = time.monotonic() + RECOVERY
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


def record(result: dict[str, Any], world: World) -> None:
    world.results.append(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(world.results, indent=2) + "\n")
    print(json.dumps(result))


LOADS: list[Load] = []  # every case's load, so a case that failed still names its files
LITTER: set[str] = set()  # every leftover seen so far ("destination/name")


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_every_file_delivered_once_and_nothing_left_behind(
    fault: Fault, world: World
) -> None:
    """Under this fault and the steady load, every file reaches its destination whole and
    once, nothing temporary is left, the read models equal a rebuild, and the time to
    recover is measured."""
    if fault.needs == "proxy" and world.proxy is None:
        pytest.skip("Toxiproxy is not built: run infra/install.sh (needs Go)")
    if fault.needs == "tmpfs" and not world.store_capped:
        pytest.skip("no size-capped tmpfs for the store (needs root)")
    prefix = fault.name
    load = world.load(RATE)
    LOADS.append(load)
    loading = asyncio.create_task(load.run(prefix, PRE + fault.seconds + POST, GIVE_UP))
    await asyncio.sleep(PRE)
    began = time.time()
    try:
        await fault.begin(world)
        await asyncio.sleep(fault.seconds)
    finally:
        await fault.end(world)  # the next case starts from a healthy world, whatever happened
    ended = time.monotonic()
    await loading
    finished, undelivered = await delivered_by(world, load, prefix, began)

    # a component that died on its own is restarted, as the supervisor does, and reported
    exited = {n: code for n, code in world.stack.alive().items() if code is not None}
    for name in COMPONENTS:
        if name not in world.stack.processes or name in exited:
            world.stack.processes.pop(name, None)
            await asyncio.to_thread(world.stack.start, name)

    successes = succeeded(world.tail)
    queued = queued_of(world, prefix)
    twice = [e.transfer_id for e in queued if len(successes.get(e.transfer_id, ())) > 1]
    # what the log's second successes were: the same record again (one event id), or a
    # FOUND_* confirmation that wrote nothing; the servers say whether anything was written
    repeated = sum(1 for t in twice if len({i for i, _ in successes[t]}) < len(successes[t]))
    found = sum(1 for t in twice if any(v.startswith("FOUND") for _, v in successes[t][1:]))
    registrations = Counter((e.destination, e.target) for e in queued)
    known = {"warm-up.bin"} | {s.target for each in LOADS for s in each.sent}
    servers = await asyncio.to_thread(at_servers, world, load, known)
    result: dict[str, Any] = {
        "fault": fault.name,
        "fault_seconds": fault.seconds,
        "files": len(load.sent),
        "accepted": sum(1 for s in load.sent if s.accepted),
        "registered_unanswered": sum(1 for s in load.sent if s.registered_unanswered),
        "answers": dict(load.answers),
        "recovery_seconds": None if undelivered else round(finished - ended, 1),
        "undelivered": len(undelivered),
        "undelivered_last_event": stuck(world, undelivered),
        "succeeded_twice_in_log": len(twice),
        "of_which_repeated_records": repeated,
        "of_which_found_confirmations": found,
        "duplicate_registrations": sum(n - 1 for n in registrations.values() if n > 1),
        **servers,
        "operator_restarts": [
            d.name
            for d in world.destinations
            if any(
                e.new_status is DestinationStatus.HOLD
                and e.envelope.occurred_at.timestamp() >= began
                for e in world.tail.of(DestinationStatusChanged, d.name)
            )
        ],
        "exited": exited,
    }
    checking = time.monotonic()
    result["rebuild_equal"] = await rebuild_equals_live(world)
    result["rebuild_check_seconds"] = round(time.monotonic() - checking, 1)
    record(result, world)

    assert result["accepted"] == result["files"], "files the API never accepted"
    assert result["corrupt"] == 0, result
    assert result["rebuild_equal"], "read models differ from a rebuild"
    ended = {k: n for k, n in result["undelivered_last_event"].items() if k.startswith(ENDED)}
    lost = {k: n for k, n in result["undelivered_last_event"].items() if k not in ended}
    assert result["missing"] <= len(undelivered), f"files missing at the servers: {result}"
    # issue 13's rules, each a failure: a host's error holds the destination, never ends a file
    assert not ended, f"errors classed by whose problem they are: ended {ended}"
    assert not result["duplicate_registrations"], "effectively once: registered twice"
    assert not result["litter"], f"no litter: {result['litter']} temporary files left"
    # a registration it cannot make durable is a quick 503 with Retry-After, never a 500/silence
    assert not result["answers"].get("500"), result["answers"]
    assert not result["answers"].get("ReadTimeout"), result["answers"]
    assert not result["written_twice"], "effectively once: written twice at the servers"
    assert not result["unseen_writes"], "the servers' write count missed a delivered file"
    # neither delivered nor ended RECOVERY s after the fault: stuck where it says (a scheduler
    # killed between a TransferScheduled and its order stranded one until issue 20's check)
    assert not lost, f"not delivered in {RECOVERY:.0f} s, last event {lost}"
