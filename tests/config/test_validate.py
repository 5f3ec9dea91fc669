"""Validation of every configuration field: good values pass, bad ones name the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bus.config import KNOWN_SCHEMES
from bus.config.secrets import hash_password
from bus.config.validate import validate, validate_against
from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.events.base import Compression
from bus.events.config import (
    Alias,
    HostType,
    MqttSettings,
    OnHostFailure,
    PortalOperation,
    TimeWindow,
)
from protocols.registry import MODULES
from tests.config import factories as f

OK = None


def check(entity: Any, error_field: str | None) -> None:
    if error_field is None:
        validate(entity)
        return
    with pytest.raises(ConfigurationError) as caught:
        validate(entity)
    assert caught.value.field == error_field
    assert caught.value.reason


def win(start: int, end: int, *days: int) -> TimeWindow:
    return TimeWindow(start_minute=start, end_minute=end, weekdays=days)


DESTINATION_CASES: list[tuple[str, Any, str | None]] = [
    ("name", "site-a", OK),
    ("name", "A1_b2-c3", OK),
    ("name", "x" * 32, OK),
    ("name", "x" * 33, "destination.name"),
    ("name", "", "destination.name"),
    ("name", "a--b", "destination.name"),
    ("name", "-ab", "destination.name"),
    ("name", "ab_", "destination.name"),
    ("name", "a b", "destination.name"),
    ("name", "a/b", "destination.name"),
    ("type", "DISSEMINATION", "destination.type"),
    ("country", "fr", OK),
    ("country", "GB", OK),
    ("country", None, OK),
    ("country", "FRA", "destination.country"),
    ("country", "f1", "destination.country"),
    ("max_connections", 5, OK),
    ("max_connections", -1, OK),
    ("max_connections", 0, "destination.max_connections"),
    ("retry_count", -1, OK),
    ("retry_count", 0, OK),
    ("retry_count", 7, OK),
    ("retry_count", -2, "destination.retry_count"),
    ("retry_frequency_ms", 1, OK),
    ("retry_frequency_ms", 0, "destination.retry_frequency_ms"),
    ("start_frequency_ms", 0, "destination.start_frequency_ms"),
    ("reset_frequency_ms", -5, "destination.reset_frequency_ms"),
    ("max_start", 1, OK),
    ("max_start", 0, "destination.max_start"),
    ("max_requeue", 0, OK),
    ("max_requeue", -1, "destination.max_requeue"),
    ("max_pending", 1, OK),
    ("max_pending", 0, "destination.max_pending"),
    ("max_file_size", None, OK),
    ("max_file_size", 1, OK),
    ("max_file_size", 0, "destination.max_file_size"),
    ("max_file_size", -1, "destination.max_file_size"),
    ("max_inactivity_ms", 0, "destination.max_inactivity_ms"),
    ("on_host_failure", OnHostFailure.NEXT_AND_RETRY, OK),
    ("on_host_failure", "NEXT_AND_STAY_X", "destination.on_host_failure"),
    ("if_target_exists", "APPEND", "destination.if_target_exists"),
    ("delete_from_spool", "NEVER", "destination.delete_from_spool"),
    ("compression", Compression.ZSTD, OK),
    ("compression", "rar", "destination.compression"),
    ("active_windows", (win(0, 1439), win(1320, 120, 1, 7)), OK),
    ("active_windows", (win(0, 1440),), "destination.active_windows[0].end_minute"),
    ("active_windows", (win(-1, 10),), "destination.active_windows[0].start_minute"),
    ("active_windows", (win(60, 60),), "destination.active_windows[0]"),
    ("active_windows", (win(0, 60, 0),), "destination.active_windows[0].weekdays"),
    ("active_windows", (win(0, 60, 8),), "destination.active_windows[0].weekdays"),
    ("active_windows", (win(0, 60, 2, 2),), "destination.active_windows[0].weekdays"),
    ("default_lifetime_ms", 1, OK),
    ("default_lifetime_ms", 0, "destination.default_lifetime_ms"),
    ("aliases", (Alias(destination="other"), Alias(destination="b", pattern=r"\.grib$")), OK),
    ("aliases", (Alias(destination="site-a"),), "destination.aliases[0].destination"),
    ("aliases", (Alias(destination="bad name"),), "destination.aliases[0].destination"),
    (
        "aliases",
        (Alias(destination="b"), Alias(destination="b")),
        "destination.aliases[1].destination",
    ),
    ("aliases", (Alias(destination="b", pattern="(unclosed"),), "destination.aliases[0].pattern"),
    ("mqtt", MqttSettings(publish=True, topic="a/b/", qos=2), OK),
    ("mqtt", MqttSettings(publish=True, qos=3), "destination.mqtt.qos"),
    ("mqtt", MqttSettings(publish=True, qos=-1), "destination.mqtt.qos"),
    ("mqtt", MqttSettings(publish=True, topic="a/+/b"), "destination.mqtt.topic"),
    ("mqtt", MqttSettings(publish=True, topic="a/#"), "destination.mqtt.topic"),
    ("mqtt", MqttSettings(publish=True, topic=""), "destination.mqtt.topic"),
    (
        "mqtt",
        MqttSettings(publish=True, expiry_interval_ms=0),
        "destination.mqtt.expiry_interval_ms",
    ),
    ("transfer_group", "bad group", "destination.transfer_group"),
    ("source_host", "src-1", OK),
    ("source_host", "bad host", "destination.source_host"),
    ("date_format", "", "destination.date_format"),
    ("properties", {"scheduler.requeuepattern": "x"}, OK),
    (
        "properties",
        {"scheduler.activeTimeRange": "06:00-18:00"},
        "destination.properties.scheduler.activeTimeRange",
    ),
    ("properties", {"bad key": "x"}, "destination.properties.bad key"),
]


@pytest.mark.parametrize(("field", "value", "error"), DESTINATION_CASES)
def test_destination_fields(field: str, value: Any, error: str | None) -> None:
    """Each destination field accepts the OpenECPDS range and refuses the rest by name."""
    check(dataclasses.replace(f.destination(), **{field: value}), error)


HOST_CASES: list[tuple[str, Any, str | None]] = [
    ("id", "ftp-1", OK),
    ("id", "host.example_1", OK),
    ("id", "", "host.id"),
    ("id", "a b", "host.id"),
    ("id", "x" * 65, "host.id"),
    ("nickname", "Primary FTP", OK),
    ("nickname", " ", "host.nickname"),
    ("nickname", "a\nb", "host.nickname"),
    ("type", "DISSEMINATION", "host.type"),
    ("protocol", "sftp", OK),
    ("protocol", "memory", OK),
    ("protocol", "gopher", "host.protocol"),
    ("protocol", "FTP", "host.protocol"),
    ("address", "", "host.address"),
    ("address", "a b:21", "host.address"),
    ("login", None, OK),
    ("login", "user", OK),
    ("login", "", "host.login"),
    ("options", {"ftp.mkdirs": "yes", "usetmp": "true", "ectrans.connectTimeOut": "1m"}, OK),
    ("options", {"sftp.": "x"}, "host.options.sftp."),
    ("options", {"a.b.c": "x"}, "host.options.a.b.c"),
    ("options", {"": "x"}, "host.options."),
    ("max_connections", -1, OK),
    ("max_connections", 0, "host.max_connections"),
    ("retry_count", -2, "host.retry_count"),
    ("retry_frequency_ms", 0, "host.retry_frequency_ms"),
    ("polling_frequency_ms", 0, "host.polling_frequency_ms"),
    ("transfer_group", "bad group", "host.transfer_group"),
    ("network_code", "LL", OK),
    ("network_code", "X", "host.network_code"),
]


@pytest.mark.parametrize(("field", "value", "error"), HOST_CASES)
def test_host_fields(field: str, value: Any, error: str | None) -> None:
    """Each host field accepts good values and refuses bad ones by name."""
    check(dataclasses.replace(f.host(), **{field: value}), error)


def test_acquisition_host_needs_a_polling_frequency() -> None:
    """An acquisition host without a polling frequency is refused; with one it passes."""
    check(f.host(type=HostType.ACQUISITION), "host.polling_frequency_ms")
    check(f.host(type=HostType.ACQUISITION, polling_frequency_ms=600_000), OK)


def test_known_schemes_match_the_protocol_registry() -> None:
    """bus keeps its own list of schemes (it may not import protocols): it equals the registry."""
    assert set(KNOWN_SCHEMES) == set(MODULES)


@pytest.mark.parametrize(
    ("entity", "error"),
    [
        (f.association(priority=0), OK),
        (f.association(priority=99), OK),
        (f.association(priority=-1), "association.priority"),
        (f.association(dest="bad name"), "association.destination"),
        (f.association(host_id=""), "association.host"),
        (f.group(), OK),
        (f.group(name="bad name"), "transfer_group.name"),
        (f.group(stores=("disk", "s3-main")), OK),
        (f.group(stores=("disk", "disk")), "transfer_group.stores"),
        (f.group(region=""), "transfer_group.region"),
        (f.group(backup=True), "transfer_group.backup_host"),
        (f.group(backup=True, backup_host="bk-1"), OK),
        (f.group(min_replication_count=-1), "transfer_group.min_replication_count"),
        (f.group(replicate=True, stores=("disk",)), "transfer_group.stores"),
        (f.group(replica_store="asia-store", fallback_group="europe-c", fallback_after=1), OK),
        (f.group(replica_store="bad store"), "transfer_group.replica_store"),
        (f.group(replica_store=""), "transfer_group.replica_store"),
        (f.group(fallback_group="bad name"), "transfer_group.fallback_group"),
        (f.group(name="asia", fallback_group="asia"), "transfer_group.fallback_group"),
        (f.group(fallback_after=0), "transfer_group.fallback_after"),
        (f.user(), OK),
        (f.user(password_hash=None), OK),
        (f.user(login="a.b@c-d"), OK),
        (f.user(login=""), "data_user.login"),
        (f.user(login="a b"), "data_user.login"),
        (f.user(password_hash="secret"), "data_user.password_hash"),
        (f.user(password_hash="$argon2id$nonsense"), "data_user.password_hash"),
        (f.user(ssh_authorized_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO0 me@host",)), OK),
        (f.user(ssh_authorized_keys=("not a key",)), "data_user.ssh_authorized_keys[0]"),
        (f.user(operations=(PortalOperation.GET, PortalOperation.DIR)), OK),
        (f.user(operations=(PortalOperation.GET, PortalOperation.GET)), "data_user.operations"),
        (f.user(operations=("steal",)), "data_user.operations"),
        (f.user(destinations=("bad name",)), "data_user.destinations[0]"),
        (f.user(country="xyz"), "data_user.country"),
        (f.user(portal_service="ANY"), "data_user.portal_service"),
        (f.policy(), OK),
        (f.policy(policy_id="bad id"), "policy.id"),
        (f.policy(destinations=("-x",)), "policy.destinations[0]"),
        (f.policy(users=("a b",)), "policy.users[0]"),
        (f.policy(properties={"portal.x": "1", "??": "2"}), "policy.properties.??"),
    ],
)
def test_other_entities(entity: Any, error: str | None) -> None:
    """Associations, transfer groups, data users and policies: good values pass, bad are named."""
    check(entity, error)


def test_a_clear_password_is_never_accepted_as_a_hash() -> None:
    """Only a real argon2 hash passes as password_hash (a fresh one does)."""
    check(f.user(password_hash=hash_password("x")), OK)
    check(f.user(password_hash="$argon2id$v=19$m=65536,t=3,p=4$"), "data_user.password_hash")


def view_with(*entities: Any) -> ConfigView:
    return ConfigView(
        destinations={e.name: e for e in entities if type(e).__name__ == "Destination"},
        hosts={e.id: e for e in entities if type(e).__name__ == "Host"},
        transfer_groups={e.name: e for e in entities if type(e).__name__ == "TransferGroup"},
        users={e.login: e for e in entities if type(e).__name__ == "DataUser"},
    )


@pytest.mark.parametrize(
    ("entity", "error"),
    [
        (f.destination(aliases=(Alias(destination="site-b"),)), OK),
        (
            f.destination(aliases=(Alias(destination="nowhere"),)),
            "destination.aliases[0].destination",
        ),
        (f.destination(transfer_group="europe"), OK),
        (f.destination(transfer_group="asia"), "destination.transfer_group"),
        (f.destination(source_host="ftp-1"), OK),
        (f.destination(source_host="nope"), "destination.source_host"),
        (f.host(transfer_group="asia"), "host.transfer_group"),
        (f.association(), OK),
        (f.association(dest="nowhere"), "association.destination"),
        (f.association(host_id="nope"), "association.host"),
        (f.association(host_id="bk-1"), "association.host"),
        (f.group(backup=True, backup_host="bk-1"), OK),
        (f.group(backup=True, backup_host="nope"), "transfer_group.backup_host"),
        (f.group("asia", replica_store="ftp-1", fallback_group="europe"), OK),
        (f.group("asia", fallback_group="default"), OK),
        (f.group("asia", replica_store="nope"), "transfer_group.replica_store"),
        (f.group("asia", fallback_group="america"), "transfer_group.fallback_group"),
        (f.group("asia", fallback_group="relay"), "transfer_group.fallback_group"),
        (f.user(destinations=("site-a",)), OK),
        (f.user(destinations=("nowhere",)), "data_user.destinations[0]"),
        (f.policy(destinations=("site-b",), users=("alice",)), OK),
        (f.policy(destinations=("nowhere",)), "policy.destinations[0]"),
        (f.policy(users=("bob",)), "policy.users[0]"),
    ],
)
def test_references_are_checked_against_the_view(entity: Any, error: str | None) -> None:
    """validate_against refuses a reference to a destination, host, group or user not there."""
    view = view_with(
        f.destination("site-a"),
        f.destination("site-b"),
        f.host("ftp-1"),
        f.host("bk-1", type=HostType.BACKUP),
        f.group("europe"),
        f.group("relay", fallback_group="europe"),  # regional itself: no chain of fallbacks
        f.user("alice"),
    )
    if error is None:
        validate_against(view, entity)
        return
    with pytest.raises(ConfigurationError) as caught:
        validate_against(view, entity)
    assert caught.value.field == error


def test_default_transfer_group_needs_no_definition() -> None:
    """The built-in 'default' transfer group is always there."""
    validate_against(ConfigView(), f.destination(transfer_group="default"))


def test_dissemination_directory_is_parsed_as_a_target_template() -> None:
    """A dissemination host's Directory must parse as a template; other host types are free."""
    pytest.importorskip("bus.templates.directory")
    check(f.host(directory="/incoming/$destination[name]/"), OK)
    check(f.host(directory="($destination[name]==x) /a/\n/default/"), OK)
    check(f.host(directory="/incoming/$nosuch[x]/"), "host.directory")
    check(f.host(type=HostType.BACKUP, directory="/incoming/$nosuch[x]/"), OK)


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"scheduler.requeueon": "$time1 >"}, "destination.properties.scheduler.requeueon"),
        ({"scheduler.requeueon": "$when > 1"}, "destination.properties.scheduler.requeueon"),
        (
            {"scheduler.requeuepattern": "(unclosed"},
            "destination.properties.scheduler.requeuepattern",
        ),
        ({"scheduler.requeueignore": "[z-a]"}, "destination.properties.scheduler.requeueignore"),
    ],
)
def test_a_bad_duplicate_rule_is_refused_naming_its_field(
    properties: dict[str, str], field: str
) -> None:
    """A requeueon rule that does not parse, or a target regex that does not compile, is
    refused with the property named."""
    with pytest.raises(ConfigurationError) as caught:
        validate(dataclasses.replace(f.destination(), properties=properties))
    assert field in str(caught.value)


def test_a_good_duplicate_rule_is_accepted() -> None:
    """A well-formed rule and regexes pass."""
    props = {
        "scheduler.requeueon": "$time1 > $time2 && $size1 != $size2",
        "scheduler.requeuepattern": r"\.grib$",
    }
    validate(dataclasses.replace(f.destination(), properties=props))
