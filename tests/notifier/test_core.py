"""The notifier's pure decisions: topic, properties, WIS2 message, skips."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from bus.events.base import Compression
from bus.events.config import MqttSettings
from bus.events.datafiles import Checksums
from consumers.notifier import core
from tests.notifier.factories import (
    DATA,
    LOGIN,
    SHA512,
    destination,
    host,
    queued,
    succeeded,
    view,
    wis2_errors,
)

NOW = datetime.now(UTC)
WIS = MqttSettings(publish=True)
VIEW = view(host(), destination("wis", WIS))


def notify(**kw: object) -> core.Notification:
    decision = core.decide(
        kw.pop("done", succeeded("t1", "wis")),  # type: ignore[arg-type]
        kw.pop("queued", core.Queued.of(queued("t1", "wis"))),  # type: ignore[arg-type]
        kw.pop("view", VIEW),  # type: ignore[arg-type]
        NOW,
    )
    assert isinstance(decision, core.Notification), decision
    return decision


def test_topic_defaults_to_destination_and_appends_target_collapsing_slashes() -> None:
    """No topic: ``<destination>/<target>``; a trailing ``/`` appends; ``//`` collapse."""
    assert core.topic_for("wis", WIS, "a/b.grib") == "wis/a/b.grib"
    assert core.topic_for("wis", MqttSettings(publish=True, topic="x//y/"), "/a.bin") == "x/y/a.bin"
    assert core.topic_for("wis", MqttSettings(publish=True, topic="fixed/t"), "a.bin") == "fixed/t"


def test_wis2_message_is_valid_and_describes_the_delivered_file() -> None:
    """The built payload validates against the WIS2 schema and names data, link and checksum."""
    note = notify()
    message = json.loads(note.payload)
    assert wis2_errors(message) == []
    assert message["id"] == note.message_id == core.message_id("t1", 1)
    assert message["conformsTo"] == [core.WIS2_CORE]
    assert message["type"] == "Feature"
    assert message["geometry"] is None
    props = message["properties"]
    assert props["data_id"] == note.data_id == "wis/2026/grib/file.grib2"
    assert props["content_length"] == len(DATA)
    assert props["pubtime"].endswith("Z")
    assert props["datetime"].endswith("Z")
    assert props["integrity"] == {
        "method": "sha512",
        "value": base64.b64encode(bytes.fromhex(SHA512)).decode(),
    }
    [link] = message["links"]
    assert link["rel"] == "canonical"
    assert link["href"] == "sftp://data.example.org:2222/incoming/2026/grib/file.grib2"
    assert LOGIN not in note.payload.decode()
    assert note.topic == "wis/2026/grib/file.grib2"
    assert note.content_type == "application/geo+json"
    assert note.data_file_id == "df-t1"


def test_md5_only_or_compressed_gets_no_integrity_and_stays_valid() -> None:
    """The schema has no md5 method, and a compressed delivery is not the hashed content."""
    md5_only = core.Queued.of(queued("t1", "wis", checksums=Checksums(adler32="1", md5="ab")))
    compressed = succeeded("t1", "wis", compression=Compression.GZIP)
    for note in (notify(queued=md5_only), notify(done=compressed)):
        message = json.loads(note.payload)
        assert wis2_errors(message) == []
        assert "integrity" not in message["properties"]


def test_expiry_defaults_to_remaining_lifetime_and_expired_is_skipped() -> None:
    """Expiry is the transfer's remaining lifetime unless configured; an expired one is skipped."""
    soon = core.Queued.of(queued("t1", "wis", expiry=NOW + timedelta(seconds=90)))
    assert notify(queued=soon).expiry_interval_s == 90
    configured = view(destination("wis", MqttSettings(publish=True, expiry_interval_ms=1500)))
    assert notify(queued=soon, view=configured).expiry_interval_s == 2
    gone = core.Queued.of(queued("t1", "wis", expiry=NOW - timedelta(seconds=1)))
    assert core.decide(succeeded("t1", "wis"), gone, VIEW, NOW) == core.Skip("transfer expired")


def test_destinations_that_do_not_publish_are_skipped() -> None:
    """No mqtt settings, publish false, or an unknown destination: no message."""
    config = view(destination("quiet", None), destination("off", MqttSettings(publish=False)))
    for name in ("quiet", "off", "unknown"):
        decision = core.decide(succeeded("t", name), None, config, NOW)
        assert isinstance(decision, core.Skip)


def test_only_transfers_with_the_event_flag_are_announced() -> None:
    """Given a publishing destination, a transfer queued without the event flag is skipped;
    with it (or with its queueing forgotten, after a restart) the file is announced."""
    quiet = core.Queued.of(queued("t1", "wis", notify=False))
    decision = core.decide(succeeded("t1", "wis"), quiet, VIEW, NOW)
    assert decision == core.Skip("transfer without the event flag")
    flagged = core.Queued.of(queued("t1", "wis", notify=True))
    assert isinstance(core.decide(succeeded("t1", "wis"), flagged, VIEW, NOW), core.Notification)
    assert isinstance(core.decide(succeeded("t1", "wis"), None, VIEW, NOW), core.Notification)


def test_static_payload_is_sent_verbatim_with_its_properties() -> None:
    """A configured payload replaces the WIS2 message; qos, retain, content type as set."""
    mqtt = MqttSettings(
        publish=True, topic="fixed", qos=2, retain=True, content_type="text/plain", payload="hi"
    )
    note = notify(view=view(destination("wis", mqtt)))
    assert (note.payload, note.qos, note.retain, note.content_type) == (
        b"hi",
        2,
        True,
        "text/plain",
    )
    assert note.topic == "fixed"


def test_without_the_queued_event_it_publishes_what_the_success_says() -> None:
    """A success whose queueing was not seen is still notified, named by the delivered file."""
    note = notify(queued=None)
    message = json.loads(note.payload)
    assert wis2_errors(message) == []
    assert note.data_id == "wis/file.grib2"
    assert note.topic == "wis/file.grib2"
    assert note.expiry_interval_s is None
    assert note.data_file_id == ""
    assert "integrity" not in message["properties"]


def test_message_id_is_stable_per_attempt() -> None:
    """The same attempt always gets the same id (deduplication), another attempt another one."""
    assert notify().message_id == notify().message_id
    other = notify(done=succeeded("t1", "wis", attempt=2))
    assert other.message_id != notify().message_id


def test_the_schema_check_rejects_a_broken_message() -> None:
    """The validator used above is real: a bad id, no links or an md5 integrity fail it."""
    message = json.loads(notify().payload)
    assert wis2_errors({**message, "id": "not-a-uuid"})
    assert wis2_errors({**message, "links": []})
    props = {**message["properties"], "integrity": {"method": "md5", "value": "qg=="}}
    assert wis2_errors({**message, "properties": props})
