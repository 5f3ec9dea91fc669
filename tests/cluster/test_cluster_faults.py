"""ecpds past one machine's worth of processes (issue 20, ``make test-cluster``): on a 3-broker
Kafka cluster, with two or three instances of each component as separate processes, a steady
load is delivered exactly once while one broker, then one instance of each component, is
SIGKILLed and brought back as a supervisor would.

Each case: files are POSTed at ``RATE`` per second through both APIs, round robin over the 20
destinations (``tests.cluster.conftest``); ``PRE`` seconds in, the victim (for the broker, the
one leading faust's own topic of the schedulers, ``busiest``) is SIGKILLed and started again
2 s later (``tests.chaos.faults.kill``; a broker ``BROKER_DOWN`` seconds later); the load goes
on ``POST`` more seconds. Then, within ``RECOVERY`` seconds, every registered transfer of the
case must succeed, and (the chaos suite's checks, ``tests.chaos.checks``):

- every file is at its destination under its target name with the sha256 of the bytes put, and
  was written there once (``tests.chaos.writes`` counts the versions at the servers); no target
  registered twice; no temporary file left; no destination put on hold;
- no host's ``max_connections`` exceeded: the files being written at once in each host's folder,
  counted by the kernel as the servers write (``tests.cluster.uploads``), never more than the
  limit; and that meter saw at least one upload for every file the case delivered there, so an
  empty meter cannot pass;
- no final name was ever written in place (a partial file at a final name).

Recovery after each kill is measured from the event log: ``resumed_s`` is how long the slowest
destination waited from the kill to its next delivery (a destination gets a file every 2 s
here, so 2-5 s is no stall), ``slowest_file_s`` the longest any file of the case took from
queued to delivered (under 1 s without a fault), ``all_delivered_s`` the kill to the case's last
delivery (the load still runs 2 s + ``POST`` after it). After the cases, the read models must
equal a rebuild from the log. A table is printed and the results are written to
``$ECPDS_VAR/cluster-results.json``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.settings import Settings
from tests.chaos.checks import (
    ENDED,
    at_servers,
    delivered_by,
    held_since,
    queued_of,
    rebuild_equals_live,
    restart_exited,
    stuck,
)
from tests.chaos.conftest import World, succeeded
from tests.chaos.faults import Fault, inject, kill
from tests.chaos.load import Load
from tests.cluster.conftest import COMPONENTS, HOST_LIMIT, ClusterInfra, ClusterWorld, combined

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.postgres]

RATE = 10.0  # files per second through the two APIs, over the 20 destinations
PRE, POST = 3.0, 3.0  # seconds of load before the kill and after the restart
BROKER_DOWN = 10.0  # past the 6 s after which the cluster fences a silent broker
RECOVERY = 90.0  # bound on the time from the restart to the case's last file delivered
GIVE_UP = 90.0  # a client stops retrying one file after this long
# faust's own topic of the schedulers' group (made by faust with one copy, bus/faust_app.py)
FAUST_LEADER = "ecpds-scheduler-__assignor-__leader"
VICTIMS: dict[str, int] = {}  # case -> the broker it killed
RESULTS = Settings.from_env().var_dir / "cluster-results.json"


async def busiest(bootstrap: str) -> int:
    """The broker leading faust's own topic of the schedulers (``FAUST_LEADER``), else the
    one leading most partitions of ``ecpds.transfers``: the kill that costs the most."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([FAUST_LEADER, "ecpds.transfers"])
    finally:
        await admin.close()
    leaders = {t["topic"]: [p["leader"] for p in t["partitions"]] for t in described}
    if leaders.get(FAUST_LEADER):
        return int(leaders[FAUST_LEADER][0])
    return int(Counter(leaders["ecpds.transfers"]).most_common(1)[0][0])


def broker() -> Fault:
    """SIGKILL the ``busiest`` broker; ``BROKER_DOWN`` seconds later start it again."""
    killed: list[int] = []

    def infra(world: World) -> ClusterInfra:
        assert isinstance(world.infra, ClusterInfra)
        return world.infra

    async def begin(world: World) -> None:
        killed.append(await busiest(infra(world).bootstrap))
        VICTIMS["kill-broker"] = killed[-1]
        await asyncio.to_thread(infra(world).kill_node, killed[-1])

    async def end(world: World) -> None:
        await asyncio.to_thread(infra(world).start_node, killed[-1])

    return Fault("kill-broker", begin, end, BROKER_DOWN)


# one of each component, one at a time (the first instance: each has work at any moment)
KILLS = [
    broker(),
    *(kill(n) for n in ("api-1", "scheduler-1", "mover-a1", "projector-1")),
    *(kill(n) for n in ("mover-b1", "notifier", "janitor")),
]
RESULTS_SO_FAR: list[dict[str, Any]] = []


def recovery(world: World, prefix: str, killed: float) -> dict[str, float | None]:
    """Recovery figures of a case from the event log (see the module docstring)."""
    queued: dict[str, float] = {}
    done: dict[str, float] = {}
    for e in world.tail.events:
        at = e.envelope.occurred_at.timestamp()
        if isinstance(e, TransferQueued) and e.target.startswith(f"{prefix}-"):
            queued[e.transfer_id] = at
        elif isinstance(e, TransferSucceeded) and e.transfer_id in queued:
            done.setdefault(e.transfer_id, at)
    resumed = []
    for d in world.destinations:
        times = [
            e.envelope.occurred_at.timestamp() for e in world.tail.of(TransferSucceeded, d.name)
        ]
        after = [at for at in times if at >= killed]
        resumed.append(min(after) - killed if after else None)
    return {
        "resumed_s": None if None in resumed else round(max(r or 0.0 for r in resumed), 1),
        "slowest_file_s": round(max(done[t] - queued[t] for t in done), 1) if done else None,
        "all_delivered_s": round(max(done.values()) - killed, 1) if done else None,
    }


def host_limits(world: ClusterWorld, load: Load, since: dict[Any, int]) -> dict[str, Any]:
    """Per host folder: the most uploads at once in the case, and whether the meter saw at
    least one upload for each file of the case delivered there."""
    assert world.uploads is not None
    peaks, uploads = world.uploads.counts()
    files = Counter(
        world.folder(d) for s in load.sent for d in world.destinations if d.name == s.destination
    )
    return {
        "peaks": {f.name: peaks.get(f, 0) for f in world.limits},
        "exceeded": sorted(f.name for f, limit in world.limits.items() if peaks[f] > limit),
        "unmetered": sorted(
            f.name for f, n in files.items() if uploads.get(f, 0) - since.get(f, 0) < n
        ),
        "final_writes": list(world.uploads.final_writes),
        "overflowed": world.uploads.overflowed,
    }


@pytest.mark.timeout(600)  # the first case also waits for the world: brokers, 11 processes
@pytest.mark.parametrize("victim", KILLS, ids=[k.name for k in KILLS])
async def test_every_file_delivered_once_within_limits(victim: Fault, world: World) -> None:
    """With one process SIGKILLed and restarted under load, every file arrives whole and once,
    within every host limit counted at the servers, without an operator."""
    assert isinstance(world, ClusterWorld)
    assert world.uploads is not None
    prefix = victim.name
    loads = world.loads(RATE)
    world.uploads.mark()
    _, before = world.uploads.counts()
    runs = [(load, f"{prefix}-{i}") for i, load in enumerate(loads)]
    killed, restarted = await inject(world, victim, runs, PRE, POST, GIVE_UP)
    load = combined(loads)
    finished, undelivered = await delivered_by(world, load, prefix, killed, RECOVERY)

    # a process that died on its own is restarted, as the supervisor does, and reported
    exited = await restart_exited(world, COMPONENTS)

    successes = succeeded(world.tail)
    queued = queued_of(world, prefix)
    registrations = Counter((e.destination, e.target) for e in queued)
    world.known |= {s.target for s in load.sent}
    servers = await asyncio.to_thread(at_servers, world, load, world.known)
    result: dict[str, Any] = {
        "killed": victim.name.removeprefix("kill-")
        + (f" {VICTIMS[victim.name]}" if victim.name in VICTIMS else ""),
        "down_s": victim.seconds,
        "files": len(load.sent),
        "accepted": sum(1 for s in load.sent if s.accepted),
        "answers": dict(load.answers),
        **recovery(world, prefix, killed),
        "restart_to_delivered_s": None if undelivered else round(finished - restarted, 1),
        "undelivered": len(undelivered),
        "undelivered_last_event": stuck(world, undelivered),
        "succeeded_twice_in_log": sum(
            1 for e in queued if len(successes.get(e.transfer_id, ())) > 1
        ),
        "duplicate_registrations": sum(n - 1 for n in registrations.values() if n > 1),
        **servers,
        **host_limits(world, load, before),
        "held": held_since(world, killed),
        "exited": exited,
    }
    record(result)

    assert result["accepted"] == result["files"], "files the APIs never accepted"
    assert not result["undelivered"], f"not delivered: {result['undelivered_last_event']}"
    assert result["corrupt"] == 0, result
    assert result["missing"] == 0, result
    assert not result["written_twice"], "exactly once: a file written twice at its server"
    assert not result["unseen_writes"], "the servers' write count missed a delivered file"
    assert not result["duplicate_registrations"], "exactly once: a target registered twice"
    assert not result["litter"], "a temporary file left at a destination"
    assert not result["exceeded"], f"a host limit exceeded at the server: {result['peaks']}"
    assert not result["unmetered"], "the uploads meter missed files: the limit check is blind"
    assert not result["final_writes"], "a final name was written in place (partial file)"
    assert not result["overflowed"], "the kernel dropped upload events: the count is unsure"
    assert not result["held"], "a destination was put on hold: it waits for an operator"
    ended = [k for k in result["undelivered_last_event"] if k.startswith(ENDED)]
    assert not ended, f"transfers ended instead of delivered: {ended}"


async def test_read_models_equal_a_rebuild(world: World) -> None:
    """After every kill, the read models the two projectors kept equal a rebuild from the log
    (and the uploads meter saw a host busy up to its limit; the recovery table is printed)."""
    started = time.monotonic()
    equal = await rebuild_equals_live(world)
    RESULTS_SO_FAR.append(
        {"rebuild_equal": equal, "rebuild_s": round(time.monotonic() - started, 1)}
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(RESULTS_SO_FAR, indent=2) + "\n")
    print(table(RESULTS_SO_FAR))
    assert equal, "read models differ from a rebuild"
    # a meter that never saw a host at its limit could not have seen one above it either
    peaks = [max(r["peaks"].values()) for r in RESULTS_SO_FAR if "peaks" in r]
    assert peaks, "no case ran"
    assert max(peaks) == HOST_LIMIT, f"no host was ever busy up to its limit: {peaks}"


def record(result: dict[str, Any]) -> None:
    RESULTS_SO_FAR.append(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(RESULTS_SO_FAR, indent=2) + "\n")
    print(json.dumps(result))


def table(results: list[dict[str, Any]]) -> str:
    """The recovery after each kill, one line per case."""
    head = ("killed", "files", "resumed_s", "slowest_file_s", "all_delivered_s", "peaks max")
    lines = ["", " | ".join(head)]
    for r in results:
        if "killed" in r:
            peak = max(r["peaks"].values(), default=0)
            cells = (r["killed"], r["files"], r["resumed_s"], r["slowest_file_s"])
            lines.append(" | ".join(str(c) for c in (*cells, r["all_delivered_s"], peak)))
    return "\n".join(lines)
