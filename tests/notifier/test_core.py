"""The notifier's pure decisions: WIS2 topic, message, link, relation, refusals, skips."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from bus.events.config import DeleteFromSpool, MqttSettings
from bus.events.datafiles import Checksums
from bus.events.products import Lateness, Measure, TransferLate
from consumers.notifier import core
from consumers.notifier.wis2 import refusal
from tests.bus.samples import sample
from tests.config import factories as f
from tests.notifier.factories import (
    DATA,
    LOGIN,
    PORTAL,
    SHA512,
    WIS2,
    destination,
    host,
    limit_errors,
    queued,
    succeeded,
    topic_errors,
    view,
    wis2_errors,
)

NOW = datetime.now(UTC)
WIS = MqttSettings(publish=True)
VIEW = view(host(), destination("wis", WIS))
TOPIC = "origin/a/wis2/int-ecpds-test/data/core/weather/prediction/forecast/medium-range"


def decide(**kw: object) -> core.Notification | core.Skip | core.Refused:
    return core.decide(
        kw.pop("done", succeeded("t1", "wis")),  # type: ignore[arg-type]
        kw.pop("queued", core.Queued.of(queued("t1", "wis"))),  # type: ignore[arg-type]
        kw.pop("view", VIEW),  # type: ignore[arg-type]
        NOW,
        portal=PORTAL,
        republished=bool(kw.pop("republished", False)),
    )


def notify(**kw: object) -> core.Notification:
    decision = decide(**kw)
    assert isinstance(decision, core.Notification), decision
    return decision


def refused(**kw: object) -> core.Refused:
    decision = decide(**kw)
    assert isinstance(decision, core.Refused), decision
    return decision


def test_wis2_message_is_valid_and_links_the_portal_download() -> None:
    """The message passes the schema, the limits and the hierarchy; its one canonical link is
    the portal's HTTPS URL of the file, with type, length and the sha512 of the stored bytes."""
    note = notify()
    message = json.loads(note.payload)
    assert wis2_errors(message) == []
    assert limit_errors(note.payload) == []
    assert topic_errors(note.topic) == []
    assert note.topic == TOPIC
    assert message["id"] == note.message_id == core.message_id("t1", 1)
    assert message["conformsTo"] == [core.WIS2_CORE]
    assert message["geometry"] is None
    props = message["properties"]
    assert props["data_id"] == note.data_id == "int-ecpds-test/wis/2026/grib/file.grib2"
    assert props["pubtime"].endswith("Z")
    assert props["datetime"] is None
    assert props["integrity"] == {
        "method": "sha512",
        "value": base64.b64encode(bytes.fromhex(SHA512)).decode(),
    }
    assert message["links"] == [
        {
            "rel": "canonical",
            "type": "application/octet-stream",
            "href": f"{PORTAL}/wis/2026/grib/file.grib2",
            "length": len(DATA),
        }
    ]
    assert LOGIN not in note.payload.decode()
    assert (note.content_type, note.data_file_id, note.relation) == (
        "application/geo+json",
        "df-t1",
        "canonical",
    )


def test_download_base_date_folder_and_quoting() -> None:
    """A public base replaces the portal's; a destination grouped by date links its date
    folder; names are URL-quoted."""
    props = {**WIS2, "wis2.downloadBase": "https://data.example.org/wis2/"}
    dest = destination("wis", WIS, props, group_by_date=True)
    event = queued("t1", "wis", target="a b.txt")
    note = notify(view=view(dest), queued=core.Queued.of(event))
    [link] = json.loads(note.payload)["links"]
    day = event.queue_time.strftime("%Y%m%d")
    assert link["href"] == f"https://data.example.org/wis2/wis/{day}/a%20b.txt"
    assert link["type"] == "text/plain"


def test_metadata_gives_geometry_and_data_times() -> None:
    """``latitude``/``longitude`` make a Point; ``start_datetime``/``end_datetime`` a span in
    UTC; a ``datetime`` one instant; the message stays valid."""
    meta = {
        "latitude": "51.5",
        "longitude": "-0.9",
        "start_datetime": "2026-12-07T00:00:00+01:00",
        "end_datetime": "2026-12-07T06:00:00Z",
    }
    note = notify(queued=core.Queued.of(queued("t1", "wis", metadata=meta)))
    message = json.loads(note.payload)
    assert wis2_errors(message) == []
    assert message["geometry"] == {"type": "Point", "coordinates": [-0.9, 51.5]}
    assert message["properties"]["start_datetime"] == "2026-12-06T23:00:00Z"
    assert "datetime" not in message["properties"]
    one = core.Queued.of(queued("t1", "wis", metadata={"datetime": "2026-12-07T12:00:00"}))
    assert (
        json.loads(notify(queued=one).payload)["properties"]["datetime"] == "2026-12-07T12:00:00Z"
    )


def test_republish_is_an_update_with_the_same_data_id_and_another_id() -> None:
    """A new file instance, or a data id another transfer announced, links ``update`` under the
    same ``data_id``; its id differs from the canonical one."""
    first = notify()
    again = core.Queued.of(queued("t1", "wis", file_instance=2))
    for update in (notify(queued=again), notify(republished=True)):
        message = json.loads(update.payload)
        assert message["links"][0]["rel"] == update.relation == "update"
        assert update.data_id == first.data_id
        assert update.message_id != first.message_id
        assert wis2_errors(message) == []
        assert limit_errors(update.payload) == []


def test_deletion_links_the_same_file_when_the_destination_asks() -> None:
    """An announced file that expires gives a valid ``deletion`` of the same data id when
    ``wis2.deletion`` is yes, and nothing otherwise."""
    note = notify()
    assert isinstance(core.deletion(note, VIEW, NOW), core.Skip)
    asking = view(destination("wis", WIS, {**WIS2, "wis2.deletion": "yes"}))
    gone = core.deletion(note, asking, NOW + timedelta(hours=1))
    assert isinstance(gone, core.Notification)
    message = json.loads(gone.payload)
    assert message["links"][0]["rel"] == gone.relation == "deletion"
    assert message["links"][0]["href"] == json.loads(note.payload)["links"][0]["href"]
    assert (gone.data_id, gone.topic) == (note.data_id, note.topic)
    assert gone.message_id != note.message_id
    assert wis2_errors(message) == []
    assert limit_errors(gone.payload) == []


def test_a_destination_without_wis2_settings_is_refused_not_sent() -> None:
    """``mqtt.publish`` without ``wis2.*`` would publish off the hierarchy: refused, with why."""
    plain = view(destination("wis", WIS, {}))
    assert "no WIS2 settings" in refused(view=plain).reason


def test_a_transfer_group_declares_wis2_for_a_destination_giving_its_topic_only() -> None:
    """The group's centre id and policy, the destination's own topic: one valid message on the
    topic they make together."""
    group = f.group(
        "eu", properties={"wis2.centreId": "int-ecpds-group", "wis2.dataPolicy": "recommended"}
    )
    own = {"wis2.topic": WIS2["wis2.topic"]}
    grouped = view(group, destination("wis", WIS, own, transfer_group="eu"))
    note = notify(view=grouped)
    assert note.topic == TOPIC.replace(
        "int-ecpds-test/data/core", "int-ecpds-group/data/recommended"
    )
    assert wis2_errors(json.loads(note.payload)) == []
    assert topic_errors(note.topic) == []


def test_messages_breaking_a_rule_are_refused_with_the_reason() -> None:
    """Bad metadata, a portal link to files deleted on success, and an oversized message are
    refused before they leave."""
    bad_time = core.Queued.of(queued("t1", "wis", metadata={"datetime": "yesterday"}))
    assert "datetime" in refused(queued=bad_time).reason
    on_success = view(destination("wis", WIS, delete_from_spool=DeleteFromSpool.ON_SUCCESS))
    assert "deleted on success" in refused(view=on_success).reason
    huge = core.Queued.of(queued("t1", "wis", target="x" * 9000 + ".bin"))
    why = refused(queued=huge).reason
    assert "8192" in why
    assert refused(queued=huge).topic == TOPIC


def test_the_check_names_each_broken_rule() -> None:
    """The pre-send check refuses an off-hierarchy topic, a schema error, two links, a link
    with credentials and inline content over 4096 bytes."""
    note = notify()
    message = json.loads(note.payload)
    assert refusal(TOPIC, note.payload) is None
    assert "level 7" in (refusal(TOPIC.replace("weather", "wether"), note.payload) or "")
    assert "not origin/a/wis2" in (refusal("wis/file", note.payload) or "")
    assert "schema" in (refusal(TOPIC, core.encode({**message, "id": "x"})) or "")
    link = message["links"][0]
    twice = core.encode({**message, "links": [link, {**link, "rel": "update"}]})
    assert "exactly one" in (refusal(TOPIC, twice) or "")
    secret = {**link, "href": "https://u:p@portal.example.org/f"}
    assert "credentials" in (refusal(TOPIC, core.encode({**message, "links": [secret]})) or "")
    content = {"encoding": "utf-8", "size": 10, "value": "é" * 2100}
    inline = {**message, "properties": {**message["properties"], "content": content}}
    assert "inline content" in (refusal(TOPIC, core.encode(inline)) or "")


def test_expiry_defaults_to_remaining_lifetime_and_expired_is_skipped() -> None:
    """Expiry is the transfer's remaining lifetime unless configured; an expired one is skipped."""
    soon = core.Queued.of(queued("t1", "wis", expiry=NOW + timedelta(seconds=90)))
    assert notify(queued=soon).expiry_interval_s == 90
    configured = view(destination("wis", MqttSettings(publish=True, expiry_interval_ms=1500)))
    assert notify(queued=soon, view=configured).expiry_interval_s == 2
    gone = core.Queued.of(queued("t1", "wis", expiry=NOW - timedelta(seconds=1)))
    assert decide(queued=gone) == core.Skip("transfer expired")


def test_destinations_that_do_not_publish_are_skipped() -> None:
    """No mqtt settings, publish false, or an unknown destination: no message."""
    config = view(destination("quiet", None), destination("off", MqttSettings(publish=False)))
    for name in ("quiet", "off", "unknown"):
        assert isinstance(decide(done=succeeded("t", name), queued=None, view=config), core.Skip)


def test_only_transfers_with_the_event_flag_are_announced() -> None:
    """Given a publishing destination, a transfer queued without the event flag is skipped;
    with it (or with its queueing forgotten, after a restart) the file is announced."""
    quiet = core.Queued.of(queued("t1", "wis", notify=False))
    assert decide(queued=quiet) == core.Skip("transfer without the event flag")
    assert isinstance(decide(queued=None), core.Notification)


def test_static_payload_is_sent_verbatim_with_its_properties() -> None:
    """A configured payload replaces the WIS2 message; topic, qos, retain, content type as set."""
    mqtt = MqttSettings(
        publish=True, topic="fixed", qos=2, retain=True, content_type="text/plain", payload="hi"
    )
    note = notify(view=view(destination("wis", mqtt, {})))
    assert (note.payload, note.qos, note.retain, note.content_type, note.topic) == (
        b"hi",
        2,
        True,
        "text/plain",
        "fixed",
    )
    assert core.topic_for("wis", MqttSettings(publish=True, topic="x//y/"), "/a.bin") == "x/y/a.bin"


def test_without_the_queued_event_it_publishes_what_the_success_says() -> None:
    """A success whose queueing was not seen is still notified, named by the delivered file."""
    note = notify(queued=None)
    message = json.loads(note.payload)
    assert wis2_errors(message) == []
    assert note.data_id == "int-ecpds-test/wis/file.grib2"
    assert note.expiry_interval_s is None
    assert note.data_file_id == ""
    assert "integrity" not in message["properties"]


def test_md5_only_gets_no_integrity_and_stays_valid() -> None:
    """The schema has no md5 method: an md5-only file has no ``integrity``."""
    md5_only = core.Queued.of(queued("t1", "wis", checksums=Checksums(adler32="1", md5="ab")))
    message = json.loads(notify(queued=md5_only).payload)
    assert wis2_errors(message) == []
    assert "integrity" not in message["properties"]


def test_message_id_is_stable_per_attempt() -> None:
    """The same attempt always gets the same id (deduplication), another attempt another one."""
    assert notify().message_id == notify().message_id
    other = notify(done=succeeded("t1", "wis", attempt=2))
    assert other.message_id != notify().message_id


def test_the_schema_check_rejects_a_broken_message() -> None:
    """The tests' validator is real: a bad id, no links or an md5 integrity fail it."""
    message = json.loads(notify().payload)
    assert wis2_errors({**message, "id": "not-a-uuid"})
    assert wis2_errors({**message, "links": []})
    props = {**message["properties"], "integrity": {"method": "md5", "value": "qg=="}}
    assert wis2_errors({**message, "properties": props})


def late_transfer(destination: str, transfer_id: str | None = "tr-9") -> TransferLate:
    return sample(
        TransferLate,
        destination=destination,
        transfer_id=transfer_id,
        stream="oper",
        time="00",
        step="24",
        type="fc",
        measure=Measure.TRANSFER,
        lateness=Lateness.VERY_LATE,
        predicted_at=datetime(2026, 12, 7, 1, 30, tzinfo=UTC),
        observed_at=None,
        late_by_ms=45 * 60_000,
    )


def test_lateness_is_published_where_the_destination_asks_off_the_wis2_hierarchy() -> None:
    """``mqtt.onLate`` sends a TransferLate as JSON on ``ecpds/late/<destination>`` (or
    ``mqtt.lateTopic``), with the event's id; without it, nothing."""
    on = view(destination("wis", WIS, {**WIS2, "mqtt.onLate": "yes"}))
    note = core.lateness(late_transfer("wis"), on)
    assert isinstance(note, core.Notification)
    assert note.topic == "ecpds/late/wis"
    message = json.loads(note.payload)
    assert message["id"] == note.message_id == late_transfer("wis").envelope.event_id
    assert message["product"] == "oper/00/24/fc"
    assert (message["measure"], message["lateness"]) == ("transfer", "very_late")
    assert message["predicted_at"] == "2026-12-07T01:30:00Z"
    assert message["observed_at"] is None
    assert message["late_by_s"] == 45 * 60
    assert note.content_type == "application/json"
    elsewhere = view(destination("wis", None, {"mqtt.onLate": "yes", "mqtt.lateTopic": "ops/x"}))
    moved = core.lateness(late_transfer("wis", None), elsewhere)
    assert isinstance(moved, core.Notification)
    assert (moved.topic, moved.transfer_id) == ("ops/x", "")
    assert isinstance(core.lateness(late_transfer("wis"), VIEW), core.Skip)
    assert isinstance(core.lateness(late_transfer("nowhere"), on), core.Skip)
