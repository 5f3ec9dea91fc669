"""A destination's WIS2 settings (``wis2.*`` properties) as configuration apply checks them."""

from __future__ import annotations

import pytest

from bus.config import wis2
from bus.config.validate import validate_destination
from bus.config.yamlio import load
from bus.errors import ConfigurationError
from bus.events.config import Destination
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
        ({"wis2.centreId": "int-ecmwf", "wis2.topic": None}, "wis2.topic", "required"),
        ({"wis2.tpoic": "x"}, "wis2.tpoic", "unknown property"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field_and_level(
    change: dict[str, str | None], field: str, words: str
) -> None:
    """Each bad value (or half a declaration) is refused with its property and the topic
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
