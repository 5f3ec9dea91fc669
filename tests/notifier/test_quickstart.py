"""The quick tour's configuration (``infra/examples/quickstart.yaml``) makes WIS2-valid
notifications whose link is the file on the Data Portal, readable by its data user."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bus.config.view import ConfigView
from bus.config.yamlio import load
from bus.events.config import DataUser, Destination
from bus.events.config_changes import DataUserDefined, DestinationDefined
from bus.settings import ROOT, Settings
from consumers.notifier import core, subscribers
from consumers.notifier.runner import portal_base
from tests.bus.samples import sample
from tests.notifier.factories import limit_errors, queued, succeeded, topic_errors, wis2_errors

QUICKSTART = Path(ROOT) / "infra" / "examples" / "quickstart.yaml"


def test_the_quick_tour_destination_publishes_a_valid_message_linking_the_portal() -> None:
    """demo-local's message for hello.txt passes every WIS2 check and links the portal's
    default HTTPS address; demo-reader may read its topic."""
    entities = load(QUICKSTART.read_text()).entities
    view = ConfigView().evolve(
        [sample(DestinationDefined, destination=e) for e in entities if isinstance(e, Destination)]
        + [sample(DataUserDefined, data_user=e) for e in entities if isinstance(e, DataUser)]
    )
    done = succeeded("t1", "demo-local")
    waiting = core.Queued.of(queued("t1", "demo-local", target="hello.txt"))
    portal = portal_base(Settings.from_env({}))
    note = core.decide(done, waiting, view, datetime.now(UTC), portal=portal)
    assert isinstance(note, core.Notification), note
    message = json.loads(note.payload)
    assert wis2_errors(message) == []
    assert limit_errors(note.payload) == []
    assert topic_errors(note.topic) == []
    assert message["links"][0]["href"] == "https://127.0.0.1:8443/demo-local/hello.txt"
    assert subscribers.topics_of(view, "demo-reader") == (note.topic,)
