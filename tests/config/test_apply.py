"""Configuration as code: YAML -> validated entities -> a plan -> events, and export back."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import codec
from bus.config.apply import Change, events_for, plan, removal, resolve
from bus.config.secrets import OperatorKey, verify_password
from bus.config.view import ConfigView
from bus.config.yamlio import assignments, export, load, with_fields
from bus.errors import ConfigurationError
from bus.events.config import DataUser, DestinationType, HostType, OnHostFailure, TimeWindow
from bus.settings import ROOT

EXAMPLE = ROOT / "infra" / "examples" / "config.yaml"


@pytest.fixture
def key(tmp_path: Path) -> OperatorKey:
    return OperatorKey.load(tmp_path / "ecpds.key")


def applied(view: ConfigView, changes: list[Change]) -> ConfigView:
    return view.evolve(event for _, event in events_for(changes, source="test"))


def apply_text(view: ConfigView, text: str, key: OperatorKey, prune: bool = False) -> list[Change]:
    return plan(view, resolve(load(text), view, key), prune=prune)


def test_example_file_defines_the_quick_tour(key: OperatorKey) -> None:
    """The example defines a destination with an FTP primary and SFTP backup host, an
    acquisition host and a data user, with passwords encrypted and hashed."""
    view = applied(ConfigView(), apply_text(ConfigView(), EXAMPLE.read_text(), key))
    hosts = view.hosts_for("demo-site", HostType.DISSEMINATION)
    assert [(h.protocol, h.id) for h in hosts] == [("ftp", "demo-ftp"), ("sftp", "demo-sftp")]
    assert view.hosts["demo-provider"].type is HostType.ACQUISITION
    ftp = view.hosts["demo-ftp"]
    assert ftp.credentials is not None
    assert key.decrypt(ftp.credentials).value == "change-me"
    user = view.users["demo-user"]
    assert user.password_hash is None  # never in clear: encrypted with the operator key
    assert user.password_secret is not None
    assert verify_password(key.decrypt(user.password_secret).value, "portal-secret")
    site = view.destinations["demo-site"]
    assert site.type is DestinationType.DISSEMINATION
    assert site.retry_frequency_ms == 30_000
    assert site.max_file_size == 1024**3
    assert site.active_windows == (TimeWindow(start_minute=0, end_minute=1439),)


def test_applying_the_same_file_twice_plans_nothing(key: OperatorKey) -> None:
    """A second apply of the same file, clear passwords included, plans no change."""
    text = EXAMPLE.read_text()
    view = applied(ConfigView(), apply_text(ConfigView(), text, key))
    assert apply_text(view, text, key) == []
    assert apply_text(view, text, key, prune=True) == []


def test_export_then_apply_plans_nothing(key: OperatorKey) -> None:
    """Export writes no clear secret, and applying the export (even with prune) plans nothing."""
    view = applied(ConfigView(), apply_text(ConfigView(), EXAMPLE.read_text(), key))
    text = export(view)
    for secret in ("change-me", "portal-secret"):
        assert secret not in text
    assert f"encrypted: {key.key_id}" in text
    assert apply_text(view, text, key, prune=True) == []
    assert load(text).entities == load(export(view)).entities


def test_changes_show_field_by_field_diffs(key: OperatorKey) -> None:
    """Changing one value and one password plans one change per entity with named fields."""
    text = EXAMPLE.read_text()
    view = applied(ConfigView(), apply_text(ConfigView(), text, key))
    edited = text.replace("retry_frequency: 30s", "retry_frequency: 45s").replace(
        "password: change-me\n", "password: rotated\n"
    )
    changes = apply_text(view, edited, key)
    by_key = {c.key: c for c in changes}
    assert set(by_key) == {"destination/demo-site", "host/demo-ftp"}
    site = by_key["destination/demo-site"]
    assert site.action == "change"
    assert [(d.name, d.old, d.new) for d in site.diffs] == [("retry_frequency_ms", "30s", "45s")]
    creds = by_key["host/demo-ftp"].diffs
    assert [d.name for d in creds] == ["credentials"]
    assert "rotated" not in repr(changes)
    after = applied(view, changes)
    assert after.hosts["demo-ftp"].credentials is not None
    assert key.decrypt(after.hosts["demo-ftp"].credentials).value == "rotated"


def test_prune_removes_only_when_asked(key: OperatorKey) -> None:
    """Entities missing from the file are removed only with prune, dependents first."""
    view = applied(ConfigView(), apply_text(ConfigView(), EXAMPLE.read_text(), key))
    small = """
destinations:
  - {name: demo-site, type: dissemination, transfer_group: default}
"""
    kept = apply_text(view, small, key)
    assert [c.action for c in kept] == ["change"]
    pruned = apply_text(view, small, key, prune=True)
    removed = [c.key for c in pruned if c.action == "remove"]
    assert removed.index("association/demo-site/demo-ftp") < removed.index("host/demo-ftp")
    assert "destination/demo-site" not in removed
    assert "data-user/demo-user" in removed
    after = applied(view, pruned)
    assert set(after.destinations) == {"demo-site"}
    assert after.hosts == {}


def test_dangling_references_refuse_the_whole_plan(key: OperatorKey) -> None:
    """An association to a host that does not exist is refused before any event."""
    text = """
destinations:
  - {name: d1, type: dissemination, transfer_group: default}
associations:
  - {destination: d1, host: ghost}
"""
    with pytest.raises(ConfigurationError) as caught:
        apply_text(ConfigView(), text, key)
    assert caught.value.field == "association.host"


def test_removal_refused_while_referenced(key: OperatorKey) -> None:
    """Removing a destination a user still names is refused; removing a host drops its links."""
    view = applied(ConfigView(), apply_text(ConfigView(), EXAMPLE.read_text(), key))
    with pytest.raises(ConfigurationError) as caught:
        removal(view, "destination", "demo-site")
    assert caught.value.field == "data_user.destinations[0]"
    changes = removal(view, "host", "demo-sftp")
    assert [c.key for c in changes] == ["association/demo-site/demo-sftp", "host/demo-sftp"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "destinations: [{name: d, type: dissemination, transfer_group: default, "
            "max_connections: 0}]",
            "destinations[0].max_connections",
        ),
        ("destinations: [{name: d, type: nope, transfer_group: default}]", "destinations[0].type"),
        ("destinations: [{name: d, type: dissemination}]", "destinations[0].transfer_group"),
        (
            "destinations: [{name: d, type: dissemination, transfer_group: default, "
            "retry_frequency: soon}]",
            "destinations[0].retry_frequency",
        ),
        (
            "destinations: [{name: d, type: dissemination, transfer_group: default, colour: red}]",
            "destinations[0].colour",
        ),
        (
            "destinations: [{name: d, type: dissemination, transfer_group: default, "
            "active_windows: ['25:00-26:00']}]",
            "destinations[0].active_windows[0]",
        ),
        (
            "hosts: [{id: h, nickname: h, type: dissemination, protocol: ftp, address: x, "
            "credentials: abc}]",
            "hosts[0].credentials",
        ),
        (
            "hosts: [{id: h, nickname: h, type: dissemination, protocol: ftp, address: x, "
            "password: ''}]",
            "hosts[0].password",
        ),
        ("users: [{login: u, password_hash: clear-text}]", "users[0].password_hash"),
        ("users: [{login: u}, {login: u}]", "data-user"),
        ("planets: []", "document.planets"),
        ("- a\n- b", "document"),
        ("destinations: {name: d}", "destinations"),
    ],
)
def test_bad_documents_are_refused_naming_the_field(text: str, field: str) -> None:
    """A bad document is refused with the field at fault (and where it is in the file)."""
    with pytest.raises(ConfigurationError) as caught:
        load(text)
    assert caught.value.field == field


def test_friendly_forms_are_accepted() -> None:
    """Enum values in any case, ISO durations, sizes, windows with weekday names, bare aliases."""
    text = """
destinations:
  - name: d1
    type: Time-Critical
    transfer_group: default
    on_host_failure: next and retry
    retry_frequency: PT2M
    default_lifetime_ms: 1000
    max_file_size: 10MB
    active_windows: [{window: "22:00-02:00", weekdays: [mon, 7]}]
    aliases: [d2, {destination: d3, pattern: '\\.grib$'}]
"""
    (d,) = load(text).entities
    assert d.type is DestinationType.TIME_CRITICAL  # type: ignore[union-attr]
    assert d.on_host_failure is OnHostFailure.NEXT_AND_RETRY  # type: ignore[union-attr]
    assert d.retry_frequency_ms == 120_000  # type: ignore[union-attr]
    assert d.default_lifetime_ms == 1000  # type: ignore[union-attr]
    assert d.max_file_size == 10_000_000  # type: ignore[union-attr]
    assert d.active_windows == (TimeWindow(start_minute=1320, end_minute=120, weekdays=(1, 7)),)  # type: ignore[union-attr]
    assert [a.destination for a in d.aliases] == ["d2", "d3"]  # type: ignore[union-attr]


def test_kept_credentials_need_stored_ones(key: OperatorKey) -> None:
    """'credentials: {encrypted: id}' keeps what is stored; with nothing stored it is refused."""
    text = """
hosts:
  - {id: h1, nickname: h1, type: dissemination, protocol: ftp, address: x,
     credentials: {encrypted: abc}}
"""
    with pytest.raises(ConfigurationError) as caught:
        resolve(load(text), ConfigView(), key)
    assert caught.value.field == "host.credentials"


def test_events_carry_keys_and_changed_fields(key: OperatorKey) -> None:
    """Each change becomes one event keyed kind/id; Changed events name the changed fields."""
    view = applied(ConfigView(), apply_text(ConfigView(), EXAMPLE.read_text(), key))
    changes = apply_text(
        view, EXAMPLE.read_text().replace("max_connections: 4", "max_connections: 2"), key
    )
    ((event_key, event),) = events_for(changes, source="test", actor="ops")
    assert event_key == "host/demo-ftp"
    assert codec.event_type(event) == "ecpds.config.HostChanged"
    assert event.changed_fields == ("max_connections",)  # type: ignore[attr-defined]
    assert event.actor == "ops"  # type: ignore[attr-defined]
    assert codec.decode(codec.encode(event)) == event


def test_user_password_change_rehashes_only_when_it_differs(key: OperatorKey) -> None:
    """The same clear password keeps the stored (encrypted) hash; a new one plans a new hash,
    encrypted too."""
    text = EXAMPLE.read_text()
    view = applied(ConfigView(), apply_text(ConfigView(), text, key))
    stored = view.users["demo-user"].password_secret
    assert stored is not None
    assert apply_text(view, text, key) == []
    (change,) = apply_text(view, text.replace("portal-secret", "new-secret"), key)
    assert change.key == "data-user/demo-user"
    assert [(d.name, d.old, d.new) for d in change.diffs] == [
        ("password_secret", f"encrypted:{key.key_id}", f"encrypted:{key.key_id}")
    ]
    assert isinstance(change.entity, DataUser)
    new = change.entity.password_secret
    assert new is not None
    assert new != stored
    assert verify_password(key.decrypt(new).value, "new-secret")


def test_assignments_read_values_as_yaml_and_refuse_secrets() -> None:
    """--set values are YAML (numbers, lists, booleans); password fields are refused."""
    assert assignments(["max_connections=3", "aliases=[a, b]", "active=no", "comment="]) == {
        "max_connections": 3,
        "aliases": ["a", "b"],
        "active": False,
        "comment": "",
    }
    for bad in (["password=x"], ["novalue"], ["=3"]):
        with pytest.raises(ConfigurationError):
            assignments(bad)


def test_with_fields_changes_only_what_is_given(key: OperatorKey) -> None:
    """with_fields replaces the given fields (either duration spelling), keeps credentials,
    and validates the result."""
    view = applied(ConfigView(), apply_text(ConfigView(), EXAMPLE.read_text(), key))
    ftp = view.hosts["demo-ftp"]
    changed = with_fields(ftp, {"retry_frequency_ms": 5000, "max_connections": 2})
    assert isinstance(changed, type(ftp))
    assert changed.credentials == ftp.credentials
    assert (changed.retry_frequency_ms, changed.max_connections) == (5000, 2)
    assert changed.address == ftp.address
    with pytest.raises(ConfigurationError) as caught:
        with_fields(ftp, {"max_connections": 0})
    assert caught.value.field == "host.max_connections"
