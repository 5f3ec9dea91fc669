"""Codec benchmark: events/s encode+decode with Avro against orjson, same run, one core.

Prints one JSON object. Measured on a mix of typical events (queued, ordered-started, succeeded,
stored, heartbeat), each side doing a full round trip:

- ``avro`` (the headline): ``bus.codec.encode`` + ``decode`` (dataclass -> single-object bytes
  -> dataclass), on the path the process would use (``codec``: ``native`` when the compiled
  codec ``ecpds_avro`` is installed and ``ECPDS_CODEC`` is not ``python``);
- ``avro_python``: the same round trip on the pure-Python path (converters + fastavro);
- ``avro_body``: fastavro alone on the same dicts (no dataclass conversion, no header), the
  ceiling of any pure-Python codec built on it;
- ``json`` (baseline): ``orjson.dumps`` + ``orjson.loads`` of the same records as JSON dicts
  (no dataclass conversion at all, so it flatters JSON).

Rates use process CPU time (the machine is shared; wall-clock figures are given too), best of
``ROUNDS``. Bounded: ``EVENTS`` events per round.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from fastavro import schemaless_reader, schemaless_writer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus import codec
from tests.bus.samples import SAMPLES

TARGET = 100_000
EVENTS = 30_000
ROUNDS = 5
MIX = (
    "ecpds.transfers.TransferQueued",
    "ecpds.transfers.TransferStarted",
    "ecpds.transfers.TransferSucceeded",
    "ecpds.datafiles.DataFileStored",
    "ecpds.movers.MoverHeartbeat",
)


def measure(steps: dict[str, Callable[[int], object]]) -> dict[str, tuple[float, float]]:
    """Best (CPU, wall) events/s of each step over EVENTS calls; rounds interleave the steps
    so a burst of load from other processes hits them all alike."""
    best = dict.fromkeys(steps, (0.0, 0.0))
    for _ in range(ROUNDS):
        for name, step in steps.items():
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(EVENTS):
                step(i)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            rate_cpu = EVENTS / cpu if cpu else 0.0
            best[name] = (max(best[name][0], rate_cpu), max(best[name][1], EVENTS / wall))
    return best


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    events = [SAMPLES[name] for name in MIX]
    encoded = [codec.encode(e) for e in events]
    python = codec.Catalogue(native=False)
    writers = [python._writers[type(e)] for e in events]
    dicts = [w.to_avro(e) for w, e in zip(writers, events, strict=True)]
    json_records = [codec.to_json(e) for e in events]
    n = len(events)

    def avro(i: int) -> object:
        return codec.decode(codec.encode(events[i % n]))

    def avro_python(i: int) -> object:
        return python.decode(python.encode(events[i % n]))

    def avro_body(i: int) -> object:
        w = writers[i % n]
        out = io.BytesIO()
        schemaless_writer(out, w.parsed, dicts[i % n])
        out.seek(0)
        return schemaless_reader(out, w.parsed, None)

    def json_baseline(i: int) -> object:
        return orjson.loads(orjson.dumps(json_records[i % n]))

    for i in range(n):  # both paths really round-trip what we time, to the same bytes
        assert avro(i) == events[i]
        assert avro_python(i) == events[i]
        assert python.encode(events[i]) == encoded[i]

    rates = measure(
        {"avro": avro, "avro_python": avro_python, "avro_body": avro_body, "json": json_baseline}
    )
    per_type = measure(
        {
            name: (lambda e: lambda _i: codec.decode(codec.encode(e)))(event)
            for name, event in zip(MIX, events, strict=True)
        }
    )
    (avro_cpu, avro_wall), (body_cpu, body_wall) = rates["avro"], rates["avro_body"]
    json_cpu, json_wall = rates["json"]
    python_cpu, python_wall = rates["avro_python"]
    sizes_avro = [len(b) for b in encoded]
    sizes_json = [len(orjson.dumps(r)) for r in json_records]
    print(
        json.dumps(
            {
                "benchmark": "codec",
                "events": EVENTS,
                "rounds": ROUNDS,
                "mix": list(MIX),
                "codec": "python" if codec.CATALOGUE.native is None else "native",
                "avro_events_per_s": round(avro_cpu),
                "avro_events_per_s_wall": round(avro_wall),
                "avro_python_events_per_s": round(python_cpu),
                "avro_python_events_per_s_wall": round(python_wall),
                "ratio_avro_to_python": round(avro_cpu / python_cpu, 2),
                "avro_body_only_events_per_s": round(body_cpu),
                "avro_body_only_events_per_s_wall": round(body_wall),
                "json_orjson_events_per_s": round(json_cpu),
                "json_orjson_events_per_s_wall": round(json_wall),
                "ratio_avro_to_json": round(avro_cpu / json_cpu, 3),
                "avro_events_per_s_by_type": {k: round(v[0]) for k, v in per_type.items()},
                "target_events_per_s": TARGET,
                "meets_target": avro_cpu >= TARGET,
                "mean_bytes_avro": round(sum(sizes_avro) / n, 1),
                "mean_bytes_json": round(sum(sizes_json) / n, 1),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
