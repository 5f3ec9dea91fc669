"""Benchmark: one acquisition poll of a 100,000-entry provider directory that finds 100 new
files, from a local folder and over SFTP (OpenSSH sshd on 127.0.0.1), beside the native listing.

The folder holds 99,900 files already acquired (their dedup state is built in memory from
the same events a runner rebuilds from the log) and 100 new ones. Figures, all in one run:

- ``listing_ms``: list + select + dedup of the whole folder (``ListingCompleted.duration_ms``);
- ``poll_ms``: the whole poll, the 100 files retrieved through the ingest service (Kafka
  events with acks=all, bytes in a local store) and their transfers queued;
- ``idle_poll_ms`` and ``idle_per_file_events``: a second poll with nothing new; the bench
  fails unless it found nothing, applied no per-file event and put exactly one event (its
  ``ListingCompleted``) on the acquisition topic (``idle_events_published``);
- baseline: ``ls -l`` of the same folder (output to /dev/null), best of 3.
- ``sftp_*``: the same for another destination whose acquisition host reaches the same folder
  over SFTP (a private OpenSSH sshd, ``internal-sftp``, key auth, AES-GCM): the listing's
  time includes the SSH connection, as the baseline's does: OpenSSH's ``sftp -b`` running
  ``ls -l`` on the folder (output to /dev/null), best of 3.

- ``idle_hosts_cpu_percent``: 500 hosts (empty local folders) polled every 10 s for 30 s by
  the runner's scheduler with nothing new: CPU of this process as a share of one core
  (target: under 20%), and the number of polls done.

Target: ``listing_ms`` within 2x ``ls -l`` and ``sftp_listing_ms`` within 2x ``sftp ls -l``.
Own topics per run; the folder, the sshd and the store are gone at the end. Prints one JSON
object.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _infra import emit, service, settings
from sftp import CIPHER, Sshd  # bench/sftp.py: the SFTP benchmark's private sshd

from bus.config.view import ConfigView
from bus.events.acquisition import FileDiscovered, RetrievalSucceeded
from bus.events.base import Envelope
from bus.events.config import Association, Destination, DestinationType, Host, HostType
from bus.kafka_access import kafka_options
from bus.logging import configure
from bus.publisher import Publisher
from bus.topics import TopicSpec, apply_topics, catalogue, partition_counts
from producers.acquisition.poll import Poller, PollReport
from producers.acquisition.runner import Scheduler
from producers.acquisition.state import AcquisitionState
from producers.ingest.index import IngestIndex
from producers.ingest.service import IngestService, IngestTopics
from protocols.base import Location
from protocols.location import location_for
from store.local import LocalStore

TOTAL = 100_000
NEW = 100


class _Config:
    def __init__(self, view: ConfigView) -> None:
        self.view = view

    def add_listener(self, _listener: object) -> None:
        pass


HOSTS = 500
IDLE_SECONDS = 30.0


async def _idle_hosts(poller: Poller, work: Path) -> dict[str, float]:
    """CPU share of one core while 500 hosts with nothing new are polled every 10 s."""
    hosts = {}
    associations = {}
    for i in range(HOSTS):
        folder = work / "idle" / f"h{i}"
        folder.mkdir(parents=True)
        hosts[f"h{i}"] = Host(
            id=f"h{i}", nickname=f"h{i}", type=HostType.ACQUISITION, protocol="file",
            address="localhost", directory=f"{folder}/{{.*}}", polling_frequency_ms=10_000,
        )  # fmt: skip
        associations[("idle", f"h{i}")] = Association(destination="idle", host=f"h{i}")
    dest = Destination(name="idle", type=DestinationType.ACQUISITION, transfer_group="g")
    config = _Config(
        ConfigView(destinations={"idle": dest}, hosts=hosts, associations=associations)
    )
    scheduler = Scheduler(poller, config, None, 16)  # type: ignore[arg-type]
    stop = asyncio.Event()
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(IDLE_SECONDS)
    stop.set()
    await task
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {
        "idle_hosts": HOSTS,
        "idle_polls": scheduler.polls,
        "idle_hosts_cpu_percent": round(100 * cpu / wall, 1),
    }


def _populate(folder: Path) -> list[str]:
    old = time.time() - 3600
    names = [f"obs_{i:06d}.bufr" for i in range(TOTAL)]
    for name in names:
        path = folder / name
        path.write_bytes(b"x" * 64)
        os.utime(path, (old, old))
    return names


def _known(state: AcquisitionState, folder: Path, names: list[str], host: str) -> None:
    """The dedup state of the files acquired before: the events a runner reads back."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    mtime = datetime.fromtimestamp(time.time() - 3600, UTC)
    for name in names:
        path = f"{folder}/{name}"

        state.apply(
            FileDiscovered(
                envelope=Envelope(
                    event_id=str(uuid.uuid4()), occurred_at=at, source="bench", correlation_id=name
                ), host_id=host, destination=host, path=path, name=name,
                size=64, modified_at=mtime, target=name,
            )
        )  # fmt: skip
        state.apply(
            RetrievalSucceeded(
                envelope=Envelope(
                    event_id=str(uuid.uuid4()),
                    occurred_at=at + timedelta(seconds=1),
                    source="bench",
                    correlation_id=name,
                ),
                host_id=host, destination=host, path=path, data_file_id=f"d-{name}",
                size=64, duration_ms=1,
            )
        )  # fmt: skip


def _ls(folder: Path) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(["ls", "-l", str(folder)], stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def _sftp_ls(sshd: Sshd, folder: Path) -> float:
    return min(sshd.sftp_batch(f"ls -l {folder}\n") for _ in range(3)) * 1000


async def _log_size(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""
    counts = await partition_counts(bootstrap, [topic])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_options()
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(counts[topic])])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _case(poller: Poller, host: Host, bootstrap: str) -> tuple[PollReport, dict[str, float]]:
    """The poll finding the 100 new files, then a poll finding nothing (checked: one event)."""

    def locate() -> Location:
        return location_for(host, None)

    t0 = time.perf_counter()
    report = await poller.poll(host, host.id, locate)
    poll_ms = (time.perf_counter() - t0) * 1000
    applied, published = poller.state.applied, await _log_size(bootstrap, poller.topic)
    t0 = time.perf_counter()
    idle = await poller.poll(host, host.id, locate)
    idle_ms = (time.perf_counter() - t0) * 1000
    idle_events = poller.state.applied - applied
    idle_published = await _log_size(bootstrap, poller.topic) - published
    if idle.listing.files_new or idle_events or idle_published != 1 or idle.listing.errors:
        raise RuntimeError(
            f"{host.id}: a poll finding nothing published per-file events: "
            f"new={idle.listing.files_new} applied={idle_events} published={idle_published} "
            f"errors={idle.listing.errors}"
        )
    acquired = max(len(report.succeeded), 1)
    return report, {
        "poll_ms": round(poll_ms, 1),
        "per_new_file_ms": round((poll_ms - report.listing.duration_ms) / acquired, 2),
        "idle_poll_ms": round(idle_ms, 1),
        "idle_listing_ms": idle.listing.duration_ms,
        "idle_new_files": idle.listing.files_new,
        "idle_per_file_events": idle_events,
        "idle_events_published": idle_published,
    }


async def main() -> None:
    s = settings()
    configure(s)  # logs to stderr: stdout carries the JSON only
    service(s, "kafka/kafka.sh")
    u = uuid.uuid4().hex[:8]
    topics = IngestTopics(f"bench.{u}.datafiles", f"bench.{u}.transfers")
    acquisition_topic = f"bench.{u}.acquisition"
    declared = {t.name: t for t in catalogue(s.topic_partitions)}
    specs = [
        TopicSpec(name, d.key, d.partitions, d.cleanup, d.retention_ms, d.namespaces, d.description)
        for name, d in (
            (acquisition_topic, declared["ecpds.acquisition"]),
            (topics.datafiles, declared["ecpds.datafiles"]),
            (topics.transfers, declared["ecpds.transfers"]),
        )
    ]
    await apply_topics(s.kafka_bootstrap, specs)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-acq-", dir=shm))
    folder = work / "provider"
    folder.mkdir()
    sshd: Sshd | None = None
    try:
        t0 = time.perf_counter()
        names = await asyncio.to_thread(_populate, folder)
        populate_s = time.perf_counter() - t0
        sshd = Sshd(work / "sshd")
        spec = f"{folder}/{{obs_.*\\.bufr}}"
        host = Host(
            id="bench", nickname="bench", type=HostType.ACQUISITION, protocol="file",
            address="localhost", directory=spec,
        )  # fmt: skip
        sftp_host = Host(
            id="bench-sftp", nickname="bench-sftp", type=HostType.ACQUISITION, protocol="sftp",
            address=f"127.0.0.1:{sshd.port}", login="root", directory=spec,
            options={
                "sftp.privateKeyFile": str(sshd.key), "sftp.fingerPrint": sshd.fingerprint,
                "sftp.cipher": CIPHER,
            },
        )  # fmt: skip
        known = names[: TOTAL - NEW]
        state, sftp_state = AcquisitionState(), AcquisitionState()
        _known(state, folder, known, host.id)
        _known(sftp_state, folder, known, sftp_host.id)
        dests = {
            h.id: Destination(name=h.id, type=DestinationType.ACQUISITION, transfer_group="g")
            for h in (host, sftp_host)
        }
        hosts = {h.id: h for h in (host, sftp_host)}
        config = _Config(ConfigView(destinations=dests, hosts=hosts))
        store = LocalStore(work / "store", durable=True)
        async with Publisher(s.kafka_bootstrap, client_id="bench-acq", linger_ms=0) as publisher:
            service_ = IngestService(
                publisher=publisher,
                store=store,
                config=config,
                index=IngestIndex(),
                topics=topics,
                source="bench",
            )
            poller = Poller(service_, state, publisher, acquisition_topic, source="bench")
            sftp_poller = Poller(service_, sftp_state, publisher, acquisition_topic, source="bench")
            ls_ms = _ls(folder)
            report, local = await _case(poller, host, s.kafka_bootstrap)
            sftp_ls_ms = _sftp_ls(sshd, folder)
            sftp_report, sftp = await _case(sftp_poller, sftp_host, s.kafka_bootstrap)
            many = await _idle_hosts(poller, work)
        await store.close()
        listing_ms = report.listing.duration_ms
        sftp_listing_ms = sftp_report.listing.duration_ms
        emit(
            {
                "benchmark": "acquisition",
                "entries": TOTAL,
                "new_files": report.listing.files_new,
                "acquired": len(report.succeeded),
                "failed": len(report.failed),
                "listing_ms": listing_ms,
                **local,
                "baseline_ls_l_ms": round(ls_ms, 1),
                "ratio_listing_vs_ls_l": round(listing_ms / ls_ms, 2),
                "ratio_idle_poll_vs_ls_l": round(local["idle_poll_ms"] / ls_ms, 2),
                "sftp_new_files": sftp_report.listing.files_new,
                "sftp_acquired": len(sftp_report.succeeded),
                "sftp_failed": len(sftp_report.failed),
                "sftp_listing_ms": sftp_listing_ms,
                **{f"sftp_{k}": v for k, v in sftp.items()},
                "baseline_sftp_ls_l_ms": round(sftp_ls_ms, 1),
                "ratio_sftp_listing_vs_sftp_ls_l": round(sftp_listing_ms / sftp_ls_ms, 2),
                "ratio_sftp_idle_listing_vs_sftp_ls_l": round(
                    sftp["idle_listing_ms"] / sftp_ls_ms, 2
                ),
                "populate_s": round(populate_s, 1),
                **many,
                "target": "listings within 2x ls -l / sftp ls -l; idle hosts under 20% of a core",
            }
        )
    finally:
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    uvloop.run(main())
