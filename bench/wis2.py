"""WIS2 notification benchmark: delivered -> subscriber received, beside mosquitto_pub/sub.

``N`` (``ECPDS_BENCH_WIS2_COUNT``, default 5,000) ``TransferSucceeded`` events of a WIS2
destination are published to Kafka at ``RATE`` per second (``ECPDS_BENCH_WIS2_RATE``, default
500), after their ``TransferQueued`` (not timed). The notifier (the production stage,
``notifier_stage``, in this process) builds each message, checks it against the WIS2 schema and
limits, publishes it at qos 1 to a private mosquitto and records ``NotificationPublished``.
``mosquitto_sub`` (qos 1, ``-F '%U %p'``: its own receipt time) reads the topic; a message's
latency is its receipt time minus the moment its ``TransferSucceeded`` was handed to Kafka.
In the same run the baseline moves the same payloads through the same broker:
``mosquitto_pub -l -q 1`` fed one payload per line at the same rate, read by the same
``mosquitto_sub``; its latency is receipt minus the moment the line was written.

Reported per side: notifications/s (count over first send -> last receipt), p50/p99/max
latency in ms, and how many arrived. Target: ecpds p99 under 100 ms at 500 notifications/s.
Kafka is the bench instance (``bench/_infra.py``); everything binds 127.0.0.1. mosquitto runs
with ``set_tcp_nodelay true``, as ``infra/mqtt/mosquitto.sh`` starts it: with its default
(Nagle's algorithm on) a PUBACK waits for the client's delayed ACK, up to 40 ms each, and a
notifier that awaits PUBACKs queues up behind them (``ECPDS_BENCH_WIS2_NAGLE=1`` measures that
case: an external broker nobody tuned).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _infra import emit, service, settings

from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.events import envelope
from bus.events.base import TransferStatus
from bus.events.config import Destination, DestinationType, MqttSettings
from bus.events.config_changes import DestinationDefined
from bus.events.datafiles import Checksums
from bus.events.transfers import TransferQueued, TransferSucceeded, Verification
from bus.logging import configure
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.notifier import core
from consumers.notifier.adapters import PahoBroker
from consumers.notifier.runner import notifier_stage

COUNT = int(os.environ.get("ECPDS_BENCH_WIS2_COUNT", "5000"))
RATE = float(os.environ.get("ECPDS_BENCH_WIS2_RATE", "500"))
TOPIC = "origin/a/wis2/int-ecpds-bench/data/core/weather/bench/notifications"
# ECPDS_BENCH_WIS2_NAGLE=1 runs mosquitto with its default (Nagle on: its PUBACKs wait for the
# client's delayed ACK), as an external broker nobody tuned; ecpds' own broker sets nodelay
NODELAY = "" if os.environ.get("ECPDS_BENCH_WIS2_NAGLE") else "set_tcp_nodelay true\n"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SHA512 = "ab" * 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mosquitto(port: int, where: Path) -> subprocess.Popen[bytes]:
    conf = where / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    conf.write_text("\n".join(lines) + "\n" + NODELAY)
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    sys.exit("mosquitto did not start")


class Receiver:
    """``mosquitto_sub`` on the topic, writing each message with its own receipt time to a
    file (read after the run: parsing them here would take the notifier's CPU)."""

    def __init__(self, port: int, where: Path) -> None:
        self.path = where / f"received-{uuid.uuid4().hex[:8]}.txt"
        with self.path.open("wb") as out:
            argv = ["mosquitto_sub", "-p", str(port), "-q", "1", "-t", TOPIC, "-F", "%U %p"]
            self.process = subprocess.Popen(argv, stdout=out)
        time.sleep(0.5)  # subscribed before anything is published

    async def collect(self, count: int, timeout: float) -> dict[str, float]:
        """Message id -> receipt time (Unix seconds), once ``count`` arrived or at ``timeout``."""
        for _ in range(int(timeout * 2)):  # a look every half second
            if self.path.read_bytes().count(b"\n") >= count:
                break
            await asyncio.sleep(0.5)
        got: dict[str, float] = {}
        for line in self.path.read_bytes().splitlines():
            stamp, _, payload = line.partition(b" ")
            got.setdefault(json.loads(payload)["id"], float(stamp))
        return got

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def publisher_process(port: int) -> subprocess.Popen[bytes]:
    """``mosquitto_pub -l``: one message per line of its input, qos 1."""
    argv = ["mosquitto_pub", "-p", str(port), "-q", "1", "-t", TOPIC, "-l"]
    return subprocess.Popen(argv, stdin=subprocess.PIPE)


def summary(sent: dict[str, float], received: dict[str, float]) -> dict[str, Any]:
    latencies = sorted((received[i] - sent[i]) * 1000 for i in received if i in sent)
    if not latencies:
        return {"received": 0}
    span = max(received.values()) - min(sent.values())
    return {
        "sent": len(sent),
        "received": len(latencies),
        "notifications_per_s": round(len(latencies) / span, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
    }


def view() -> ConfigView:
    dest = Destination(
        name="wis2-bench",
        type=DestinationType.DISSEMINATION,
        transfer_group="default",
        mqtt=MqttSettings(publish=True),
        properties={
            "wis2.centreId": "int-ecpds-bench",
            "wis2.topic": "weather/bench/notifications",
        },
    )
    return ConfigView().evolve(
        [DestinationDefined(envelope=envelope("bench", "d"), destination=dest)]
    )


async def ecpds_side(kafka: str, port: int, tag: str, where: Path) -> dict[str, Any]:
    topics = {n: f"bench.wis2.{tag}.{n}" for n in ("transfers", "datafiles", "notes", "dead")}
    await apply_topics(
        kafka,
        [TopicSpec(t, "key", 1, "delete", DAY_MS, (), "wis2 bench") for t in topics.values()],
    )
    stage = notifier_stage(
        kafka,
        PahoBroker("127.0.0.1", port, client_id=f"bench-{tag}"),
        FixedConfig(view()),
        portal="https://127.0.0.1:8443",
        transfers_topic=topics["transfers"],
        datafiles_topic=topics["datafiles"],
        notifications_topic=topics["notes"],
        deadletter_topic=topics["dead"],
        group_id=f"bench-wis2-{tag}",
        retry=RetryPolicy(initial=0.2, maximum=1.0),
        source="notifier/bench",
    )
    now = datetime.now(UTC)
    ids = [f"t{i:06d}" for i in range(COUNT)]
    async with Publisher(kafka, client_id="bench-wis2") as publisher:
        queued = [
            TransferQueued(
                envelope=envelope("bench", t),
                transfer_id=t,
                destination="wis2-bench",
                data_file_id=f"df-{t}",
                target=f"obs/{t}.bufr4",
                status=TransferStatus.WAIT,
                priority=50,
                queue_time=now,
                expiry_time=now + timedelta(days=1),
                size=4000,
                notify=True,
                checksums=Checksums(adler32="00000001", sha512=SHA512),
            )
            for t in ids
        ]
        await publisher.publish_many([(topics["transfers"], "wis2-bench", q) for q in queued])
        receiver = Receiver(port, where)
        task = asyncio.create_task(stage.run())
        await asyncio.sleep(3)  # the stage has joined and read the queued events
        # the successes come from another process, as a mover's do in production (and as
        # mosquitto_pub is its own process in the baseline)
        generator = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "generate", kafka, topics["transfers"],
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await generator.communicate()
        sent: dict[str, float] = json.loads(out)
        received = await receiver.collect(COUNT, 120)
        receiver.stop()
        stage.stop()
        await asyncio.wait_for(task, 60)
    return summary(sent, received)


def success(transfer_id: str) -> TransferSucceeded:
    return TransferSucceeded(
        envelope=envelope("bench", transfer_id),
        transfer_id=transfer_id,
        destination="wis2-bench",
        attempt=1,
        host_id="h",
        mover_id="m",
        remote_path=f"/out/obs/{transfer_id}.bufr4",
        bytes_sent=4000,
        duration_ms=1,
        bytes_per_second=4e6,
        verification=Verification.SIZE,
    )


async def generate(kafka: str, topic: str) -> None:
    """Publish the ``COUNT`` successes at ``RATE``; print message id -> time handed to Kafka."""
    sent: dict[str, float] = {}
    sends: list[asyncio.Task[Any]] = []
    async with Publisher(kafka, client_id="bench-wis2-generator") as publisher:
        start = time.monotonic()
        for index in range(COUNT):
            delay = start + index / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = f"t{index:06d}"
            done = success(t)
            sent[core.message_id(t, 1)] = time.time()
            # handed to the producer without waiting for Kafka's ack: one send at a time would
            # cap the load near 200/s, below the rate asked
            sends.append(asyncio.create_task(publisher.publish(topic, "wis2-bench", done)))
        await asyncio.gather(*sends)
    json.dump(sent, sys.stdout)


async def baseline(port: int, payloads: list[bytes], where: Path) -> dict[str, Any]:
    receiver = Receiver(port, where)
    pub = publisher_process(port)
    assert pub.stdin is not None
    sent: dict[str, float] = {}
    start = time.monotonic()
    for index, payload in enumerate(payloads):
        delay = start + index / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[json.loads(payload)["id"]] = time.time()
        pub.stdin.write(payload + b"\n")
        pub.stdin.flush()
    received = await receiver.collect(len(payloads), 60)
    pub.stdin.close()
    pub.wait(30)
    receiver.stop()
    return summary(sent, received)


def payloads_like_ecpds() -> list[bytes]:
    """The payloads the ecpds side publishes (same builder, same sizes), fresh ids."""
    config = view()
    now = datetime.now(UTC)
    made = []
    for i in range(COUNT):
        t = f"b{i:06d}"
        queued = core.Queued(
            data_file_id=f"df-{t}",
            target=f"obs/{t}.bufr4",
            size=4000,
            expiry_time=now + timedelta(days=1),
            queue_time=now,
            checksums=Checksums(adler32="00000001", sha512=SHA512),
        )
        done = success(t)
        note = core.decide(done, queued, config, now, portal="https://127.0.0.1:8443")
        assert isinstance(note, core.Notification), note
        made.append(note.payload)
    return made


async def main() -> None:
    config = settings()
    configure(config)  # the notifier logs as in production, to stderr: stdout is the JSON
    service(config, "kafka/kafka.sh")
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    with tempfile.TemporaryDirectory() as where:
        broker = start_mosquitto(port, Path(where))
        try:
            payloads = payloads_like_ecpds()
            native = await baseline(port, payloads, Path(where))
            ours = await ecpds_side(config.kafka_bootstrap, port, tag, Path(where))
        finally:
            broker.terminate()
            broker.wait(10)
    ratio = round(ours["p99_ms"] / native["p99_ms"], 1) if native.get("p99_ms") else None
    met = ours.get("p99_ms", 1e9) < 100 and ours.get("notifications_per_s", 0) >= RATE * 0.95
    emit(
        {
            "benchmark": "wis2",
            "count": COUNT,
            "rate_per_s": RATE,
            "payload_bytes": len(payloads[0]),
            "broker_tcp_nodelay": not os.environ.get("ECPDS_BENCH_WIS2_NAGLE"),
            "ecpds": ours,
            "mosquitto_pub_sub": native,
            "p99_ratio": ratio,
            "target": "ecpds p99 < 100 ms at 500 notifications/s",
            "met": met,
        }
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["generate"]:
        asyncio.run(generate(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(main())
