"""Events and configuration for the notifier tests, and the WIS2 schema check.

The schema is a copy of ``/work/shared/wis2/wis2-notification-message-bundled.json`` (WIS2
Notification Message 1.1.0, bundled), kept beside the tests so they need nothing outside
the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from bus.config.view import ConfigView
from bus.events import Event
from bus.events.base import Compression
from bus.events.config import Destination, Host, MqttSettings, TransferGroup
from bus.events.config_changes import DestinationDefined, HostDefined, TransferGroupDefined
from bus.events.datafiles import Checksums
from bus.events.transfers import TransferQueued, TransferSucceeded
from tests.bus.samples import sample
from tests.config import factories as f

SCHEMA_FILE = Path(__file__).parent / "wis2-notification-message-bundled.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
DATA = b"GRIB data of the test\n"
SHA512 = hashlib.sha512(DATA).hexdigest()
LOGIN = "alice-secret-login"


def wis2_errors(message: Any) -> list[str]:
    """Every way ``message`` breaks the WIS2 notification schema (empty when valid)."""
    return [e.message for e in VALIDATOR.iter_errors(message)]


def ets_failures(messages: Sequence[Mapping[str, Any]], home: Path) -> list[str]:
    """What WMO's stock validator, pywis-pubsub's ETS (``pywis-pubsub ets validate``, run as
    its own command), says fails in each of ``messages`` (empty when every one passes). Its
    schema is the bundled one the notifier checks against, placed where ``pywis-pubsub schema
    sync`` would put it (``$HOME/.pywis-pubsub``; the sync itself needs the internet)."""
    schema = home / ".pywis-pubsub" / "wis2-notification-message"
    schema.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SCHEMA_FILE, schema / SCHEMA_FILE.name)
    failures = []
    command = Path(sys.executable).with_name("pywis-pubsub")
    for index, message in enumerate(messages):
        path = home / f"message-{index}.json"
        path.write_text(json.dumps(message))
        ran = subprocess.run(
            [str(command), "ets", "validate", str(path)],
            env={**os.environ, "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if ran.returncode != 0:
            failures.append(f"message {index}: exit {ran.returncode}: {ran.stderr[-500:]}")
            continue
        report = json.loads(ran.stdout[ran.stdout.find("{") :])["ets-report"]  # after its log
        failures.extend(
            f"message {index}: {t.get('id', '?')}: {t.get('message', t)}"
            for t in report["tests"]
            if t["code"] == "FAILED"
        )
        if report["summary"].get("PASSED", 0) == 0:
            failures.append(f"message {index}: nothing passed: {report['summary']}")
    return failures


def host(host_id: str = "h1") -> Host:
    return f.host(host_id, protocol="sftp", address="data.example.org:2222", login=LOGIN)


PORTAL = "https://portal.example.org:8443"
WIS2 = {
    "wis2.centreId": "int-ecpds-test",
    "wis2.topic": "weather/prediction/forecast/medium-range",
}


def destination(
    name: str, mqtt: MqttSettings | None, properties: dict[str, str] | None = None, **kw: Any
) -> Destination:
    """A destination publishing with ``mqtt``, with the WIS2 settings ``WIS2`` unless
    ``properties`` are given."""
    return f.destination(
        name, mqtt=mqtt, properties=WIS2 if properties is None else properties, **kw
    )


def topic_errors(topic: str) -> list[str]:
    """Every way ``topic`` breaks the WIS2 Topic Hierarchy as the tests read it (levels 1-7)."""
    levels = topic.split("/")
    errors = []
    if levels[:3] != ["origin", "a", "wis2"]:
        errors.append("not under origin/a/wis2")
    if len(levels) < 8 or levels[4] != "data" or levels[5] not in ("core", "recommended"):
        errors.append("not a data topic with a data policy")
    disciplines = ("weather", "climate", "hydrology", "atmospheric-composition", "cryosphere")
    if len(levels) < 7 or levels[6] not in (*disciplines, "ocean", "space-weather"):
        errors.append("unknown earth-system discipline")
    return errors


def limit_errors(payload: bytes) -> list[str]:
    """The WIS2 Guide's size, inline and link rules a message breaks (empty when none)."""
    message = json.loads(payload)
    errors = []
    if len(payload) > 8192:
        errors.append("over 8192 bytes")
    content = message["properties"].get("content")
    if content is not None and len(content["value"].encode()) > 4096:
        errors.append("inline content over 4096 bytes")
    rels = [link["rel"] for link in message["links"]]
    if sum(rel in ("canonical", "update", "deletion") for rel in rels) != 1:
        errors.append(f"links {rels}: not exactly one canonical/update/deletion")
    for link in message["links"]:
        if "@" in link["href"].split("/")[2] or not link["href"].startswith("https://"):
            errors.append(f"link {link['href']}: not an https URL without credentials")
        if "type" not in link or "length" not in link:
            errors.append("link without type or length")
    return errors


def view(*entities: Destination | Host | TransferGroup) -> ConfigView:
    """The configuration after defining ``entities``, built from Defined events."""
    events: list[Event] = []
    for entity in entities:
        if isinstance(entity, Host):
            events.append(sample(HostDefined, host=entity))
        elif isinstance(entity, TransferGroup):
            events.append(sample(TransferGroupDefined, transfer_group=entity))
        else:
            events.append(sample(DestinationDefined, destination=entity))
    return ConfigView().evolve(events)


def queued(
    transfer_id: str,
    destination: str,
    *,
    target: str = "2026/grib/file.grib2",
    expiry: datetime | None = None,
    checksums: Checksums | None = None,
    notify: bool = True,
    file_instance: int = 1,
    metadata: dict[str, str] | None = None,
) -> TransferQueued:
    now = datetime.now(UTC)
    return sample(
        TransferQueued,
        transfer_id=transfer_id,
        destination=destination,
        data_file_id=f"df-{transfer_id}",
        target=target,
        size=len(DATA),
        queue_time=now,
        expiry_time=expiry or now + timedelta(hours=1),
        checksums=checksums or Checksums(adler32="0a1b2c3d", sha512=SHA512),
        notify=notify,
        file_instance=file_instance,
        metadata=metadata or {},
    )


def succeeded(
    transfer_id: str,
    destination: str,
    *,
    attempt: int = 1,
    host_id: str = "h1",
    compression: Compression = Compression.NONE,
) -> TransferSucceeded:
    return sample(
        TransferSucceeded,
        transfer_id=transfer_id,
        destination=destination,
        attempt=attempt,
        host_id=host_id,
        remote_path="/incoming/2026/grib/file.grib2",
        bytes_sent=len(DATA),
        compression=compression,
    )
