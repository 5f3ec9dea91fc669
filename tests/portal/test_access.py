"""The portal's access model (``producers.portal.access``): given a configuration, when a data
user asks for something, then it is allowed or refused with this reason. Pure: no services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.events.config import DataUser, PortalOperation
from producers.portal.access import (
    Account,
    Denied,
    Direction,
    PortalPath,
    Reason,
    Usage,
    account_of,
    authorise,
    confine,
    destinations_of,
    is_temporary,
    normalise,
)
from tests.config import factories as f

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ALL = tuple(PortalOperation)


def view_with(*users: DataUser, policies: tuple[object, ...] = ()) -> ConfigView:
    dests = {n: f.destination(n) for n in ("alpha", "beta", "gamma", "delta")}
    return ConfigView(
        destinations=MappingProxyType(dests),
        users=MappingProxyType({u.login: u for u in users}),
        policies=MappingProxyType({p.id: p for p in policies}),  # type: ignore[attr-defined]
    )


def account(**kw: object) -> Account:
    fields: dict[str, object] = {"destinations": ("alpha",), "operations": ALL}
    fields.update(kw)
    user = f.user("alice", **fields)
    return account_of(user, view_with(user))


def path(text: str) -> PortalPath:
    found = confine(text)
    assert isinstance(found, PortalPath), found
    return found


# --- destinations ------------------------------------------------------------------------------


def test_destinations_come_directly_and_through_active_policies_only() -> None:
    """A user sees its own destinations and those of active policies naming it, not others."""
    alice = f.user("alice", destinations=("alpha", "nowhere"))
    view = view_with(
        alice,
        policies=(
            f.policy("on", destinations=("beta",), users=("alice",)),
            f.policy("off", active=False, destinations=("gamma",), users=("alice",)),
            f.policy("other", destinations=("delta",), users=("bob",)),
        ),
    )
    assert destinations_of("alice", view) == ("alpha", "beta")


def test_a_destination_not_seen_is_not_found_rather_than_forbidden() -> None:
    """Asking for a destination the user does not reach answers NOT_FOUND (existence untold)."""
    refused = authorise(account(), PortalOperation.DIR, path("/beta"), NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.NOT_FOUND


# --- operations --------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ALL)
def test_each_operation_is_allowed_when_granted_and_refused_when_not(
    operation: PortalOperation,
) -> None:
    """Each of the nine operations is allowed with its grant and NO_PERMISSION without it."""
    target = path("/alpha/file.bin")
    assert authorise(account(operations=(operation,)), operation, target, NOW) is None
    others = tuple(op for op in ALL if op is not operation)
    refused = authorise(account(operations=others), operation, target, NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.NO_PERMISSION
    assert refused.operation is operation
    assert refused.path == "/alpha/file.bin"


def test_a_path_regex_must_match_the_whole_path_destination_included() -> None:
    """``portal.getPathPermRegex`` allows only full paths it matches (Java ``matches``)."""
    acct = account(properties={"portal.getPathPermRegex": r"alpha/public/.*\.grib"})
    assert authorise(acct, PortalOperation.GET, path("/alpha/public/a.grib"), NOW) is None
    for other in ("/alpha/private/a.grib", "/alpha/public/a.grib.tmp"):
        refused = authorise(acct, PortalOperation.GET, path(other), NOW)
        assert isinstance(refused, Denied)
        assert refused.reason is Reason.NO_PERMISSION
    # the regex of one operation does not limit another
    assert authorise(acct, PortalOperation.PUT, path("/alpha/private/a.grib"), NOW) is None


def test_a_bad_regex_is_a_configuration_error_naming_the_property() -> None:
    """A property that is not a regex is refused by name, not silently ignored."""
    with pytest.raises(ConfigurationError, match=r"portal\.putPathPermRegex"):
        account(properties={"portal.putPathPermRegex": "("})


# --- accounts ----------------------------------------------------------------------------------


def test_a_disabled_account_is_refused_everything() -> None:
    """An inactive account is DISABLED whatever it asks."""
    refused = authorise(account(active=False), PortalOperation.DIR, path("/"), NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.DISABLED


def test_an_account_expires_at_its_expiry_time() -> None:
    """``portal.expiry`` passed: DISABLED; before it: allowed (a date without zone is UTC)."""
    acct = account(properties={"portal.expiry": "2026-12-07T12:00:00"})
    before = authorise(acct, PortalOperation.DIR, path("/"), NOW - timedelta(seconds=1))
    assert before is None
    refused = authorise(acct, PortalOperation.DIR, path("/"), NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.DISABLED
    assert "expired" in refused.message


def test_an_account_without_destinations_cannot_open_a_session() -> None:
    """No destination, direct or by policy: NO_DESTINATIONS."""
    refused = Usage().open(account(destinations=()), NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.NO_DESTINATIONS


# --- sessions and quotas ----------------------------------------------------------------------


def test_the_session_past_max_connections_is_refused_until_one_closes() -> None:
    """``portal.maxConnections`` sessions at once; the next is MAX_CONNECTIONS; a close frees
    one."""
    acct, usage = account(properties={"portal.maxConnections": "2"}), Usage()
    assert usage.open(acct, NOW) is None
    assert usage.open(acct, NOW) is None
    refused = usage.open(acct, NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.MAX_CONNECTIONS
    assert usage.sessions("alice") == 2
    usage.close("alice")
    assert usage.open(acct, NOW) is None


def test_max_connections_follow_the_schedule_by_time_of_day() -> None:
    """``portal.maxConnectionsSchedule`` windows (UTC, one crossing midnight) set the limit
    while they hold; outside them ``portal.maxConnections`` does."""
    acct = account(
        properties={
            "portal.maxConnections": "5",
            "portal.maxConnectionsSchedule": "08:00-18:00=1, 22:00-02:00=0",
        }
    )
    assert acct.connections_at(NOW) == 1  # 12:00
    assert acct.connections_at(NOW.replace(hour=23)) == 0
    assert acct.connections_at(NOW.replace(hour=1, minute=59)) == 0
    assert acct.connections_at(NOW.replace(hour=19)) == 5
    usage = Usage()
    assert usage.open(acct, NOW) is None
    refused = usage.open(acct, NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.MAX_CONNECTIONS
    assert usage.open(acct, NOW.replace(hour=19)) is None


def test_a_bad_schedule_is_a_configuration_error_naming_the_property() -> None:
    """A window that is not ``HH:MM-HH:MM=N`` is refused by name."""
    with pytest.raises(ConfigurationError, match=r"portal\.maxConnectionsSchedule"):
        account(properties={"portal.maxConnectionsSchedule": "8-18=1"})


def test_a_negative_max_connections_is_unlimited() -> None:
    """``portal.maxConnections=-1``: no limit on sessions."""
    acct, usage = account(properties={"portal.maxConnections": "-1"}), Usage()
    assert all(usage.open(acct, NOW) is None for _ in range(50))


def test_a_spent_download_quota_refuses_new_sessions_until_it_rolls_over() -> None:
    """Bytes downloaded within the period count; once the quota is spent new sessions are
    QUOTA_EXCEEDED, and as the oldest bytes leave the window sessions are allowed again."""
    acct = account(properties={"portal.maxDownloadBytes": "1KiB", "portal.downloadPeriod": "1h"})
    usage = Usage()
    usage.moved("alice", Direction.DOWNLOAD, 600, NOW)
    usage.moved("alice", Direction.DOWNLOAD, 424, NOW + timedelta(minutes=30))
    refused = usage.open(acct, NOW + timedelta(minutes=31))
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.QUOTA_EXCEEDED
    assert usage.open(acct, NOW + timedelta(minutes=61)) is None  # the first 600 rolled out


def test_uploads_do_not_count_against_the_download_quota() -> None:
    """Each direction has its own quota."""
    acct = account(properties={"portal.maxUploadBytes": "100", "portal.maxDownloadBytes": "1000"})
    usage = Usage()
    usage.moved("alice", Direction.DOWNLOAD, 500, NOW)
    assert usage.open(acct, NOW) is None
    usage.moved("alice", Direction.UPLOAD, 100, NOW)
    refused = usage.open(acct, NOW)
    assert isinstance(refused, Denied)
    assert "upload" in refused.message


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "/alpha/../beta/x",
        "../etc/passwd",
        "/alpha/..",
        "alpha/./x",
        "/alpha//x",
        "/alpha/a\\..\\b",
        "/alpha/x\x00.txt",
        "/alpha/x\n.txt",
        "/alpha/%2e%2e/beta",
        "/alpha/..%2fbeta",
        "/alpha/%252e%252e/beta",
        "/alpha/%252fetc",
        "/alpha/%00",
        "/alpha/" + "n" * 256,
        "/alpha/" + "/".join(["d" * 200] * 6),
    ],
)
def test_paths_that_try_to_leave_the_view_or_hide_something_are_refused(raw: str) -> None:
    """``..``, empty parts, backslashes, NUL and control bytes, (double-)encoded traversal and
    over-long names are refused outright, never resolved."""
    refused = confine(raw)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.NOT_FOUND
    assert refused.path is not None
    assert "\x00" not in refused.path


def test_an_absolute_path_is_inside_the_view_not_the_server() -> None:
    """``/etc/passwd`` names a destination ``etc`` of the view, which the user does not see."""
    found = path("/etc/passwd")
    assert found.destination == "etc"
    assert found.name == "passwd"
    refused = authorise(account(), PortalOperation.GET, found, NOW)
    assert isinstance(refused, Denied)
    assert refused.reason is Reason.NOT_FOUND


def test_ordinary_names_are_kept_as_they_are() -> None:
    """Names with spaces, dots, percent signs that decode to nothing dangerous are allowed."""
    found = path("/alpha/2026/a b.c%20d..grib")
    assert found.parts == ("alpha", "2026", "a b.c%20d..grib")
    assert path("/").parts == ()
    assert path("").parts == ()
    assert path(".").parts == ()


def test_realpath_climbs_within_the_view_only() -> None:
    """``normalise`` resolves ``..`` the way ``cd ..`` needs, but never above the root."""
    assert normalise("/alpha/sub/..") == PortalPath(("alpha",))
    assert normalise("..", PortalPath(("alpha",))) == PortalPath(())
    assert normalise("x", PortalPath(("alpha",))) == PortalPath(("alpha", "x"))
    refused = normalise("/alpha/../..")
    assert isinstance(refused, Denied)
    assert "above the root" in refused.message
    assert isinstance(normalise("/alpha/%2e%2e"), Denied)


# --- temporary names ---------------------------------------------------------------------------


def test_temporary_names_are_dot_files_and_tmp_suffixes_unless_turned_off() -> None:
    """By default ``.x`` and ``x.tmp`` are uploads in progress; ``incoming.tmpDetect=no``
    turns that off and ``incoming.tmpPattern`` changes it."""
    acct = account()
    assert is_temporary(acct, "sub/.part")
    assert is_temporary(acct, "x.grib.tmp")
    assert not is_temporary(acct, "x.grib")
    assert not is_temporary(acct, ".hidden/x.grib")
    assert not is_temporary(account(properties={"incoming.tmpDetect": "no"}), "x.tmp")
    custom = account(properties={"incoming.tmpPattern": r"\.part$"})
    assert is_temporary(custom, "x.part")
    assert not is_temporary(custom, "x.tmp")
