"""A destination's WIS2 settings (``wis2.*`` properties) as configuration apply checks them."""

from __future__ import annotations

import pytest

from bus.config import wis2
from bus.config.validate import validate_against, validate_destination, validate_transfer_group
from bus.config.view import ConfigView
from bus.config.yamlio import load
from bus.errors import ConfigurationError
from bus.events.config import Destination, MqttSettings, TransferGroup
from tests.config import factories as f

GOOD = {"wis2.centreId": "int-ecmwf", "wis2.topic": "weather/surface-based-observations/synop"}


def refused(properties: dict[str, str]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        validate_destination(f.destination("d", properties=properties))
    return caught.value


def test_a_whole_declaration_is_read_with_its_defaults() -> None:
    """centre id and topic are enough: policy core, portal links, no deletions."""
    validate_destination(f.destination("d", properties=GOOD))
    settings = wis2.settings_of(GOOD)
    assert settings == wis2.Wis2Settings("int-ecmwf", "core", GOOD["wis2.topic"])
    assert settings.full_topic == (
        "origin/a/wis2/int-ecmwf/data/core/weather/surface-based-observations/synop"
    )
    assert wis2.settings_of({"scheduler.requeueon": "x"}) is None


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"wis2.topic": "wether/synop"}, "wis2.topic", "level 7 (earth-system-discipline)"),
        ({"wis2.topic": "weather"}, "wis2.topic", "level 8"),
        ({"wis2.topic": "weather//synop"}, "wis2.topic", "level 8 is empty"),
        ({"wis2.topic": "weather/+"}, "wis2.topic", "wildcards"),
        ({"wis2.topic": "weather/Synop"}, "wis2.topic", "level 8 'Synop'"),
        ({"wis2.topic": "origin/a/wis2/x"}, "wis2.topic", "only the levels below"),
        ({"wis2.centreId": "ECMWF"}, "wis2.centreId", "level 4 (centre-id)"),
        ({"wis2.dataPolicy": "open"}, "wis2.dataPolicy", "level 6 (data-policy)"),
        ({"wis2.downloadBase": "https://u:p@data.example.org/"}, "wis2.downloadBase", "creden"),
        ({"wis2.downloadBase": "ftp://data.example.org/"}, "wis2.downloadBase", "https://"),
        ({"wis2.deletion": "maybe"}, "wis2.deletion", "yes or no"),
        ({"wis2.tpoic": "x"}, "wis2.tpoic", "unknown property"),
        ({"mqtt.lateTopic": "ops/+/late"}, "mqtt.lateTopic", "without wildcards"),
        ({"mqtt.onLate": "perhaps"}, "mqtt.onLate", "yes"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field_and_level(
    change: dict[str, str | None], field: str, words: str
) -> None:
    """Each bad value is refused with its property and the topic
    level it breaks."""
    properties = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    error = refused(properties)
    problems = getattr(error, "problems", [error])
    assert any(
        p.field == f"destination.properties.{field}" and words in p.reason for p in problems
    ), problems


def test_settings_come_from_the_yaml_properties() -> None:
    """The YAML a user applies carries the settings as destination properties (``load``
    validates each entity)."""
    parsed = load(
        """
destinations:
  - name: obs
    type: dissemination
    transfer_group: default
    mqtt: {publish: true}
    properties:
      wis2.centreId: int-ecmwf
      wis2.dataPolicy: recommended
      wis2.topic: weather/prediction/forecast/medium-range/deterministic/global
      wis2.downloadBase: https://data.example.org/portal
"""
    )
    [dest] = [e for e in parsed.entities if isinstance(e, Destination)]
    settings = wis2.settings_of(dest.properties)
    assert settings is not None
    assert settings.data_policy == "recommended"
    assert settings.download_base == "https://data.example.org/portal"


def _against(destination: Destination, *groups: TransferGroup) -> ConfigurationError | None:
    view = ConfigView(transfer_groups={g.name: g for g in groups})
    try:
        validate_against(view, destination)
    except ConfigurationError as error:
        return error
    return None


def test_half_a_declaration_is_refused_naming_what_lacks() -> None:
    """A destination with a centre id and no topic (its group declaring none) is refused."""
    half = f.destination("d", properties={"wis2.centreId": "int-ecmwf"}, transfer_group="eu")
    error = _against(half, f.group("eu"))
    assert error is not None
    assert error.field == "destination.properties.wis2.topic"
    assert "required with any other wis2.* property" in error.reason
    assert _against(f.destination("d", properties=GOOD, transfer_group="eu"), f.group("eu")) is None


def test_a_transfer_group_declares_for_its_destinations_and_a_destination_overrides() -> None:
    """The group's centre id and policy apply to a destination that gives only its topic; a
    key the destination declares itself wins."""
    group = f.group(
        "eu", properties={"wis2.centreId": "int-ecmwf", "wis2.dataPolicy": "recommended"}
    )
    validate_transfer_group(group)
    topic = {"wis2.topic": "weather/surface-based-observations/synop"}
    own = f.destination("d", properties=topic, transfer_group="eu")
    assert _against(own, group) is None
    settings = wis2.settings_for(own, {"eu": group})
    assert settings is not None
    assert settings.full_topic == (
        "origin/a/wis2/int-ecmwf/data/recommended/weather/surface-based-observations/synop"
    )
    mine = f.destination("d", properties={**topic, "wis2.dataPolicy": "core"}, transfer_group="eu")
    overridden = wis2.settings_for(mine, {"eu": group})
    assert overridden is not None
    assert overridden.data_policy == "core"
    assert wis2.settings_for(f.destination("x", transfer_group="eu"), {}) is None


def test_a_destination_relying_on_a_group_without_the_key_is_refused_saying_so() -> None:
    """A topic alone, or nothing, in a group that declares WIS2 without a centre id is refused
    (naming the group) for a destination that publishes; one that publishes nothing is not."""
    group = f.group("eu", properties={"wis2.dataPolicy": "core"})
    error = _against(
        f.destination("d", properties={"wis2.topic": "weather"}, transfer_group="eu"), group
    )
    assert error is not None
    assert error.field == "destination.properties.wis2.centreId"
    publishing = f.destination("d", transfer_group="eu", mqtt=MqttSettings(publish=True))
    error = _against(publishing, group)
    assert error is not None
    assert "its transfer group eu declares wis2.* without it" in error.reason
    quiet = f.destination("q", transfer_group="eu")  # publishes nothing: the group's is not its
    assert _against(quiet, group) is None


@pytest.mark.parametrize(
    ("properties", "field", "words"),
    [
        ({"wis2.topic": "wether/synop"}, "wis2.topic", "level 7 (earth-system-discipline)"),
        ({"wis2.centreId": "ECMWF"}, "wis2.centreId", "level 4 (centre-id)"),
        ({"scheduler.requeueon": "x"}, "scheduler.requeueon", "not a transfer group property"),
    ],
)
def test_a_bad_group_property_is_refused_naming_it(
    properties: dict[str, str], field: str, words: str
) -> None:
    """A transfer group takes wis2.* properties only, each checked as a destination's."""
    with pytest.raises(ConfigurationError) as caught:
        validate_transfer_group(f.group("eu", properties=properties))
    assert caught.value.field == f"transfer_group.properties.{field}"
    assert words in caught.value.reason
