"""The backup stage's pure core: who is backed up, where, over which location, and retries."""

from __future__ import annotations

from datetime import UTC, datetime

from bus.config.view import ConfigView
from bus.events.base import TransferStatus
from bus.events.config import EncryptedSecret
from consumers.backup import core
from protocols.base import ConnectionLost
from protocols.location import directory_base
from tests.config import factories as f
from tests.janitor.factories import queued

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BACKUP_HOST = f.host("bk-1", protocol="sftp", address="127.0.0.1:2222", directory="/archive")


def view(**changes: object) -> ConfigView:
    destination = f.destination("site-a", backup=True)
    group = f.group("default", backup=True, backup_host="bk-1")
    host = BACKUP_HOST
    for name, value in changes.items():
        if name == "destination":
            destination = value  # type: ignore[assignment]
        elif name == "group":
            group = value  # type: ignore[assignment]
        elif name == "host":
            host = value  # type: ignore[assignment]
    return ConfigView(
        destinations={destination.name: destination},
        transfer_groups={group.name: group},
        hosts={host.id: host},
    )


def test_base_path_is_the_first_usable_line_cut_at_the_first_dollar() -> None:
    """The Directory field gives a base path: first line not starting with '(', cut at '$'."""
    assert directory_base("/archive/$destination[name]/x") == "/archive/"
    assert directory_base("($host[name]==a) /skip\n\n  /data/backup  \n/other") == "/data/backup"
    assert directory_base("") == ""
    assert directory_base("$dataFile[original]") == ""


def test_a_backup_destination_in_a_backup_group_is_copied_under_its_name() -> None:
    """Destination and group with backup set: path is <destination>/<target> below the base."""
    job = core.plan(queued("f1"), view())
    assert isinstance(job, core.BackupJob)
    assert job.host.id == "bk-1"
    assert job.remote_path == "site-a/f1.dat"
    assert job.full_path == "/archive/site-a/f1.dat"
    assert job.transfer_id == "f1-site-a"


def test_held_transfers_are_backed_up_too() -> None:
    """A standby (HOLD) transfer is backed up, as OpenECPDS backs up WAIT/RETR/HOLD/DONE."""
    assert isinstance(core.plan(queued("f1", status=TransferStatus.HOLD), view()), core.BackupJob)


def test_every_missing_condition_skips_with_a_reason() -> None:
    """No backup flag, no group backup, no host, an inactive host: skipped, saying why."""
    cases = {
        "not marked for backup": view(destination=f.destination("site-a")),
        "has no backup": view(group=f.group("default", backup=False, backup_host="bk-1")),
        "is not defined": view(group=f.group("default", backup=True, backup_host="bk-9")),
        "is not active": view(host=f.host("bk-1", protocol="sftp", active=False)),
    }
    for reason, config in cases.items():
        decision = core.plan(queued("f1"), config)
        assert isinstance(decision, core.Skip), reason
        assert reason in decision.reason
    unknown = core.plan(queued("f1", destination="nowhere"), view())
    assert isinstance(unknown, core.Skip)
    assert "unknown destination" in unknown.reason


def test_location_comes_from_the_host_with_options_unprefixed() -> None:
    """Protocol, address and port, login, password, base path; module prefixes stripped."""
    host = f.host(
        "bk-1",
        protocol="sftp",
        address="backup.example:2222",
        login="archiver",
        credentials=EncryptedSecret(key_id="k", ciphertext=b"x"),
        options={"sftp.fingerPrint": "SHA256:abc", "ectrans.connectTimeOut": "5s", "plain": "1"},
    )
    location = core.location_for(host, "/archive", "pw")
    assert (location.scheme, location.host, location.port) == ("sftp", "backup.example", 2222)
    assert (location.user, location.password, location.path) == ("archiver", "pw", "/archive")
    assert dict(location.options) == {
        "fingerPrint": "SHA256:abc",
        "connectTimeOut": "5s",
        "plain": "1",
    }
    assert core.location_for(f.host("b", address="bucket"), "", None).port is None
    assert core.location_for(f.host("b", address="bucket"), "", None).path == "."


def test_an_ipv6_backup_host_keeps_its_port_and_a_relative_base_goes_under_the_address() -> None:
    """``[::1]:2222/vault`` is host ``::1`` port 2222; the Directory's relative base is under
    the address's ``/vault``."""
    location = core.location_for(f.host("b", address="[::1]:2222/vault"), "daily", None)
    assert (location.host, location.port, location.path) == ("::1", 2222, "/vault/daily")


def test_outcome_events_name_host_path_and_error() -> None:
    """BackedUp carries host, full remote path and size; BackupFailed the error class and flag."""
    job = core.plan(queued("f1"), view())
    assert isinstance(job, core.BackupJob)
    ok = core.backed_up(job, 10, 5, NOW, "backup")
    assert (ok.host, ok.remote_path, ok.size, ok.transfer_id) == (
        "bk-1",
        "/archive/site-a/f1.dat",
        10,
        "f1-site-a",
    )
    assert ok.envelope.correlation_id == "f1"
    failed = core.backup_failed(job, ConnectionLost("refused"), True, 3, NOW, "backup")
    assert (failed.error_class, failed.retriable) == ("ConnectionLost", True)
    assert "after 3 attempts" in failed.message
    again = core.backed_up(job, 10, 7, NOW, "backup")
    assert again.envelope.event_id == ok.envelope.event_id  # the same copy decided twice
