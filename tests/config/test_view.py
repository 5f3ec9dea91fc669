"""The in-memory configuration view: pure, idempotent, and its lookups."""

from __future__ import annotations

from typing import Any

from bus.config.view import ConfigView
from bus.events import Event, envelope
from bus.events import config_changes as ev
from bus.events.config import Alias, HostKey, HostType
from tests.config import factories as f


def env() -> Any:
    return envelope("test", "config")


def defined(entity: Any) -> Event:
    name = type(entity).__name__
    table: dict[str, Any] = {
        "Destination": lambda e: ev.DestinationDefined(envelope=env(), destination=e),
        "Host": lambda e: ev.HostDefined(envelope=env(), host=e),
        "Association": lambda e: ev.AssociationDefined(envelope=env(), association=e),
        "TransferGroup": lambda e: ev.TransferGroupDefined(envelope=env(), transfer_group=e),
        "DataUser": lambda e: ev.DataUserDefined(envelope=env(), data_user=e),
        "Policy": lambda e: ev.PolicyDefined(envelope=env(), policy=e),
    }
    event: Event = table[name](entity)
    return event


def test_defined_changed_and_removed_events_shape_the_view() -> None:
    """Given a destination defined, changed then removed, the view follows each step."""
    view = ConfigView().apply(defined(f.destination(max_connections=3)))
    assert view.destinations["site-a"].max_connections == 3
    changed = ev.DestinationChanged(
        envelope=env(), destination=f.destination(max_connections=9), changed_fields=("x",)
    )
    view = view.apply(changed)
    assert view.destinations["site-a"].max_connections == 9
    view = view.apply(ev.DestinationRemoved(envelope=env(), name="site-a"))
    assert "site-a" not in view.destinations


def test_apply_is_pure() -> None:
    """Applying an event returns a new view and leaves the old one unchanged."""
    before = ConfigView()
    after = before.apply(defined(f.host()))
    assert before.hosts == {}
    assert set(after.hosts) == {"ftp-1"}


def test_apply_is_idempotent() -> None:
    """Applying the same events twice gives the same view as applying them once."""
    events = [
        defined(f.destination()),
        defined(f.host()),
        defined(f.association()),
        defined(f.group()),
        defined(f.user()),
        defined(f.policy(destinations=("site-a",))),
        ev.HostRemoved(envelope=env(), id="nope"),
    ]
    once = ConfigView().evolve(events)
    twice = once.evolve(events)
    assert once == twice
    assert (len(once.destinations), len(once.hosts), len(once.associations)) == (1, 1, 1)
    assert (len(once.transfer_groups), len(once.users), len(once.policies)) == (1, 1, 1)


def test_every_kind_can_be_removed() -> None:
    """Removed events of every kind take the entity out of the view."""
    view = ConfigView().evolve(
        [
            defined(f.destination()),
            defined(f.host()),
            defined(f.association()),
            defined(f.group()),
            defined(f.user()),
            defined(f.policy()),
        ]
    )
    view = view.evolve(
        [
            ev.AssociationRemoved(envelope=env(), destination="site-a", host="ftp-1"),
            ev.DestinationRemoved(envelope=env(), name="site-a"),
            ev.HostRemoved(envelope=env(), id="ftp-1"),
            ev.TransferGroupRemoved(envelope=env(), name="europe"),
            ev.DataUserRemoved(envelope=env(), login="alice"),
            ev.PolicyRemoved(envelope=env(), id="pol-1"),
        ]
    )
    assert view == ConfigView()


def test_hosts_for_follows_association_priority() -> None:
    """Hosts come lowest priority number first, filtered by type and activity on demand."""
    view = ConfigView().evolve(
        [
            defined(f.destination()),
            defined(f.host("c", active=False)),
            defined(f.host("a")),
            defined(f.host("b")),
            defined(f.host("acq", type=HostType.ACQUISITION, polling_frequency_ms=1000)),
            defined(f.association(host_id="a", priority=5)),
            defined(f.association(host_id="b", priority=1)),
            defined(f.association(host_id="c", priority=0)),
            defined(f.association(host_id="acq", priority=0)),
            defined(f.association(dest="other", host_id="a", priority=0)),
        ]
    )
    assert [h.id for h in view.hosts_for("site-a")] == ["acq", "c", "b", "a"]
    assert [h.id for h in view.hosts_for("site-a", HostType.DISSEMINATION)] == ["c", "b", "a"]
    dissemination = view.hosts_for("site-a", HostType.DISSEMINATION, active_only=True)
    assert [h.id for h in dissemination] == ["b", "a"]
    assert view.destinations_of("a") == ("other", "site-a")


def test_aliases_are_followed_recursively_and_stop_at_cycles() -> None:
    """a -> b -> c -> a gives b, c for a; each destination once, never a itself."""
    view = ConfigView().evolve(
        [
            defined(f.destination("a", aliases=(Alias(destination="b"),))),
            defined(f.destination("b", aliases=(Alias(destination="c"), Alias(destination="a")))),
            defined(f.destination("c", aliases=(Alias(destination="a"), Alias(destination="b")))),
        ]
    )
    assert view.aliases_of("a") == ("b", "c")
    assert view.aliases_of("c") == ("a", "b")
    assert view.aliases_of("unknown") == ()


def test_alias_patterns_select_by_target() -> None:
    """With a target, an alias whose pattern does not match it is not followed (nor beyond)."""
    view = ConfigView().evolve(
        [
            defined(f.destination("a", aliases=(Alias(destination="b", pattern=r"\.grib$"),))),
            defined(f.destination("b", aliases=(Alias(destination="c"),))),
            defined(f.destination("c")),
        ]
    )
    assert view.aliases_of("a") == ("b", "c")
    assert view.aliases_of("a", target="x/file.grib") == ("b", "c")
    assert view.aliases_of("a", target="x/file.nc") == ()


def test_users_for_combines_direct_access_and_policies() -> None:
    """A destination's users are those naming it plus those of active policies naming it."""
    view = ConfigView().evolve(
        [
            defined(f.destination()),
            defined(f.user("alice", destinations=("site-a",))),
            defined(f.user("bob")),
            defined(f.user("carol")),
            defined(f.policy("p1", destinations=("site-a",), users=("bob",))),
            defined(f.policy("p2", active=False, destinations=("site-a",), users=("carol",))),
        ]
    )
    assert view.users_for("site-a") == ("alice", "bob")


def _key(fingerprint: str, address: str = "sftp.example:22", host: str = "ftp-1") -> HostKey:
    return HostKey(host_id=host, address=address, key_type="ssh-ed25519", fingerprint=fingerprint)


def test_the_first_learnt_host_key_is_pinned() -> None:
    """Given two stages learning different keys at once, the first event in the log wins;
    the same key learnt twice is one pin."""
    view = ConfigView().evolve(
        [
            ev.HostKeyLearned(envelope=env(), key=_key("SHA256:first")),
            ev.HostKeyLearned(envelope=env(), key=_key("SHA256:second")),
            ev.HostKeyLearned(envelope=env(), key=_key("SHA256:first")),
        ]
    )
    assert view.host_keys["ftp-1"].fingerprint == "SHA256:first"


def test_a_key_learnt_at_a_new_address_replaces_the_pin() -> None:
    """Given a host moved to another address, the key learnt there is pinned (a key belongs
    to the address it was seen at)."""
    view = ConfigView().evolve(
        [
            ev.HostKeyLearned(envelope=env(), key=_key("SHA256:old")),
            ev.HostKeyLearned(envelope=env(), key=_key("SHA256:new", address="other:2222")),
        ]
    )
    assert view.host_keys["ftp-1"].fingerprint == "SHA256:new"


def test_a_refused_key_is_kept_until_trusted() -> None:
    """Given a pinned key, a refused key is shown until an operator trusts it; it is then the
    pin, and a key learnt afterwards changes nothing."""
    view = ConfigView().evolve(
        [
            ev.HostKeyLearned(envelope=env(), key=_key("SHA256:old")),
            ev.HostKeyRefused(envelope=env(), key=_key("SHA256:new"), expected="SHA256:old"),
        ]
    )
    assert view.refused_keys["ftp-1"].fingerprint == "SHA256:new"
    assert view.host_keys["ftp-1"].fingerprint == "SHA256:old"
    view = view.evolve(
        [
            ev.HostKeyTrusted(envelope=env(), key=_key("SHA256:new"), actor="ops"),
            ev.HostKeyLearned(envelope=env(), key=_key("SHA256:old")),
        ]
    )
    assert view.host_keys["ftp-1"].fingerprint == "SHA256:new"
    assert "ftp-1" not in view.refused_keys


def test_a_refusal_of_the_pinned_key_is_ignored() -> None:
    """A refusal read after the operator trusted that same key (a late duplicate) records
    nothing: the key is the pinned one."""
    view = ConfigView().evolve(
        [
            ev.HostKeyTrusted(envelope=env(), key=_key("SHA256:new")),
            ev.HostKeyRefused(envelope=env(), key=_key("SHA256:new"), expected="SHA256:old"),
        ]
    )
    assert view.refused_keys == {}
