"""Scheduler benchmark: the pure core alone (no Kafka), decisions/s and decision latency.

Prints one JSON object. For each size (200 destinations as the baseline measured in the same
run, then 2,000), every destination has one host and ``QUEUED`` transfers queued (500), so the
big run holds a million transfers. Measured:

- ``build``: evolving every ``TransferQueued`` (events/s) and the memory it takes (RSS delta,
  bytes per transfer);
- ``fill``: the first decide, which orders up to max connections on every destination;
- ``steady``: ``STEPS`` mover outcomes (90 % success, 10 % retriable failure) on random busy
  destinations, each step = evolve the outcome + decide + evolve the decisions, as the runner
  would; decisions/s counts decided events (an order is two: the scheduled fact and the order
  for the movers), latency is per step (p50/p99);
- ``restore``: rebuilding the indexes from the persisted entries (partition assignment);
- ``event_construction_floor`` (baseline, same run): CPU cost of only building the events of
  one order, the floor under the cost per decision.

Figures are given in wall time and in process CPU time: the machine is shared (its load
average is printed), and CPU time is the fairer measure there.

``ratio`` is the 2,000-destination cost per decision over the 200-destination one: it must
stay near 1 (cost does not grow with the number of destinations). Bounded: sizes and steps
are fixed; random choices are seeded.
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus.events.base import Envelope, TransferStatus
from bus.events.config import Association, Destination, DestinationType, Host, HostType
from bus.events.config_changes import AssociationDefined, DestinationDefined, HostDefined
from bus.events.orders import TransferOrdered
from bus.events.transfers import TransferFailed, TransferQueued, TransferSucceeded, Verification
from consumers.scheduler import outputs
from consumers.scheduler.core import SchedulerSettings, SchedulerState, decide, evolve

QUEUED = 500
SIZES = (200, 2000)
STEPS = 20_000
TARGET_RATE = 5000
TARGET_P99_MS = 20.0
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SETTINGS = SchedulerSettings(source="bench")


def rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def env(n: int, when: datetime) -> Envelope:
    return Envelope(event_id=f"b-{n}", occurred_at=when, source="bench", correlation_id="bench")


def build(destinations: int) -> tuple[SchedulerState, dict[str, Any]]:
    """A state with ``destinations`` x QUEUED queued transfers."""
    state = SchedulerState()
    n = 0
    for d in range(destinations):
        name = f"d{d:05}"
        for ev in (
            DestinationDefined(
                envelope=env(n, T0),
                destination=Destination(
                    name=name,
                    type=DestinationType.DISSEMINATION,
                    transfer_group="tg",
                    max_connections=5,
                    retry_count=-1,
                    retry_frequency_ms=1000,
                ),
            ),
            HostDefined(
                envelope=env(n, T0),
                host=Host(
                    id=f"h-{name}",
                    nickname=name,
                    type=HostType.DISSEMINATION,
                    protocol="sftp",
                    address="127.0.0.1:22",
                    max_connections=5,
                    retry_count=2,
                    retry_frequency_ms=500,
                ),
            ),
            AssociationDefined(
                envelope=env(n, T0), association=Association(destination=name, host=f"h-{name}")
            ),
        ):
            evolve(state, ev)
    expiry = T0 + timedelta(days=2)
    gc.collect()
    before_mem = rss()
    start = time.perf_counter()
    for d in range(destinations):
        name = f"d{d:05}"
        for i in range(QUEUED):
            n += 1
            tid = f"{name}-{i:04}"
            queue_time = T0 - timedelta(seconds=QUEUED - i)
            evolve(
                state,
                TransferQueued(
                    envelope=env(n, T0),
                    transfer_id=tid,
                    destination=name,
                    data_file_id=f"f{n}",
                    target=f"{tid}.grib",
                    status=TransferStatus.WAIT,
                    priority=i % 100,
                    queue_time=queue_time,
                    expiry_time=expiry,
                    size=10240,
                ),
            )
    seconds = time.perf_counter() - start
    gc.collect()
    grown = rss() - before_mem
    total = destinations * QUEUED
    return state, {
        "transfers": total,
        "queue_events_per_s": round(total / seconds),
        "rss_mb": round(grown / 2**20, 1),
        "bytes_per_transfer": round(grown / total),
    }


def run(destinations: int) -> dict[str, Any]:
    rng = random.Random(destinations)
    state, figures = build(destinations)
    state.drain_changes()
    running: dict[str, list[TransferOrdered]] = {}

    def track(events: list[Any]) -> int:
        for ev in events:
            evolve(state, ev)
            if isinstance(ev, TransferOrdered):
                running.setdefault(ev.destination, []).append(ev)
        return len(events)

    start = time.perf_counter()
    filled = track(decide(state, SETTINGS, T0))
    figures["fill"] = {"decisions": filled, "seconds": round(time.perf_counter() - start, 3)}

    latencies: list[float] = []
    cpu_latencies: list[float] = []
    decisions = 0
    busy = sorted(running)
    now = T0
    n = 10**9
    # what a runner does after restoring: the long-lived state leaves the cyclic GC's view
    gc.collect()
    gc.freeze()
    total_start, total_cpu = time.perf_counter(), time.process_time()
    for step in range(STEPS):
        now = now + timedelta(milliseconds=1)
        name = busy[rng.randrange(len(busy))]
        orders = running[name]
        if not orders:
            continue
        order = orders.pop(rng.randrange(len(orders)))
        n += 1
        if step % 10 == 9:
            outcome: Any = TransferFailed(
                envelope=env(n, now),
                transfer_id=order.transfer_id,
                destination=name,
                attempt=order.attempt,
                host_id=order.host.id,
                mover_id="m1",
                error_class="Timeout",
                message="timed out",
                retriable=True,
            )
        else:
            outcome = TransferSucceeded(
                envelope=env(n, now),
                transfer_id=order.transfer_id,
                destination=name,
                attempt=order.attempt,
                host_id=order.host.id,
                mover_id="m1",
                remote_path=order.target,
                bytes_sent=10240,
                duration_ms=3,
                bytes_per_second=3e6,
                verification=Verification.SIZE,
            )
        t, c = time.perf_counter(), time.process_time()
        evolve(state, outcome)
        decisions += track(decide(state, SETTINGS, now))
        cpu_latencies.append(time.process_time() - c)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - total_start
    cpu = time.process_time() - total_cpu
    latencies.sort()
    cpu_latencies.sort()
    figures["steady"] = {
        "steps": len(latencies),
        "decisions": decisions,
        "decisions_per_s": round(decisions / elapsed),
        "steps_per_s": round(len(latencies) / elapsed),
        "us_per_decision": round(elapsed / decisions * 1e6, 2),
        "p50_ms": round(latencies[len(latencies) // 2] * 1e3, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1e3, 3),
        "max_ms": round(latencies[-1] * 1e3, 3),
        "cpu_decisions_per_s": round(decisions / cpu),
        "cpu_us_per_decision": round(cpu / decisions * 1e6, 2),
        "cpu_p99_ms": round(cpu_latencies[int(len(cpu_latencies) * 0.99)] * 1e3, 3),
    }
    gc.unfreeze()
    start = time.perf_counter()
    gc.collect()
    figures["full_gc_ms_unfrozen"] = round((time.perf_counter() - start) * 1e3, 1)
    start = time.perf_counter()
    SchedulerState.restore(
        transfers=state.transfers.values(),
        summaries=[rt.summary for rt in state.destinations.values()],
        destinations=[rt.config for rt in state.destinations.values() if rt.config],
        hosts=state.hosts.values(),
        associations=[
            (d, h, p) for d, rt in state.destinations.items() for h, p in rt.associations.items()
        ],
    )
    figures["restore_s"] = round(time.perf_counter() - start, 2)
    return figures


def construction_baseline() -> dict[str, float]:
    """CPU cost of only building what one order decides (the scheduled fact and the order, with
    their envelopes), without any scheduling: the floor under the cost per decision."""
    state, _ = build(1)
    settings = SchedulerSettings(source="bench")
    out = decide(state, settings, T0)
    pairs = 0
    start = time.process_time()
    for i in range(STEPS):
        now = T0 + timedelta(microseconds=i)
        for ev in out:
            if isinstance(ev, TransferOrdered):
                entry = state.transfers[ev.transfer_id]
                rt = state.destinations[entry.destination]
                assert rt.config is not None
                outputs.orders("bench", now, entry, rt.config, ev.host, None)
                pairs += 1
    cpu = time.process_time() - start
    return {"cpu_us_per_decision": round(cpu / (2 * pairs) * 1e6, 2)}


def main() -> None:
    floor = construction_baseline()
    results = {str(size): run(size) for size in SIZES}
    small, big = results[str(SIZES[0])]["steady"], results[str(SIZES[-1])]["steady"]
    ratio = big["cpu_us_per_decision"] / small["cpu_us_per_decision"]
    print(
        json.dumps(
            {
                "benchmark": "scheduler-core",
                "queued_per_destination": QUEUED,
                "results": results,
                "baseline": f"{SIZES[0]} destinations, same run",
                "ratio_cost_per_decision_big_over_small": round(ratio, 2),
                "event_construction_floor": floor,
                "ratio_cost_per_decision_over_construction_floor": round(
                    big["cpu_us_per_decision"] / floor["cpu_us_per_decision"], 2
                ),
                "target": {"decisions_per_s": TARGET_RATE, "p99_ms": TARGET_P99_MS},
                "meets_target": big["decisions_per_s"] >= TARGET_RATE
                and big["p99_ms"] < TARGET_P99_MS,
                "meets_target_cpu": big["cpu_decisions_per_s"] >= TARGET_RATE
                and big["cpu_p99_ms"] < TARGET_P99_MS,
                "load_average": os.getloadavg()[0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
