"""Store names resolved to backends: URLs, the default root, and configured hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.config.secrets import encrypt
from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.events.config import Host, HostType
from protocols.base import from_bytes
from store.local import LocalStore
from store.named import NamedStores
from store.objects import ObjectSpec
from store.remote import RemoteStore
from tests.config import factories as f


def replication_host(host_id: str, **kw: object) -> Host:
    fields: dict[str, object] = {"type": HostType.REPLICATION}
    fields.update(kw)
    return f.host(host_id, **fields)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "ecpds.key"


@pytest.fixture
def stores(tmp_path: Path, key_file: Path) -> NamedStores:
    hosts = [
        replication_host(
            "archive",
            protocol="sftp",
            address="127.0.0.1:2222",
            login="keeper",
            credentials=encrypt("s3cret", key_file),
            directory="/replicas/$destination\n(ignored) /other",
            options={"sftp.fingerPrint": "SHA256:abc", "ectrans.usetmp": "yes"},
        ),
        replication_host("mirror", protocol="file", address="", directory=str(tmp_path / "m")),
        replication_host("off", protocol="file", directory=str(tmp_path / "o"), active=False),
        replication_host("bare", protocol="file", address=""),
    ]
    view = ConfigView(hosts={h.id: h for h in hosts})
    return NamedStores(tmp_path / "default", config=FixedConfig(view), key_file=key_file)


async def test_file_urls_and_the_empty_name_are_local_stores(
    stores: NamedStores, tmp_path: Path
) -> None:
    """ "" is the default root, file:///path a LocalStore there; both names are their backends'."""
    default = stores.store_for("")
    assert isinstance(default, LocalStore)
    assert default.root == (tmp_path / "default").absolute()
    other = stores.store_for(f"file://{tmp_path}/x")
    assert isinstance(other, LocalStore)
    assert other.root == tmp_path / "x"
    assert stores.backend_name(f"file://{tmp_path}/x/") == other.name
    assert stores.same(f"file://{tmp_path}/x", f"file://{tmp_path}/y/../x")
    assert stores.store_for(f"file://{tmp_path}/default") is default  # one store per root
    await stores.close()


async def test_a_url_of_another_scheme_is_a_remote_store_that_works(stores: NamedStores) -> None:
    """memory://... resolves to a RemoteStore over the memory module; objects round-trip."""
    store = stores.store_for("memory://named-test/objects")
    assert isinstance(store, RemoteStore)
    assert store.name == "memory://named-test/objects"
    assert stores.store_for("memory://named-test/objects") is store  # cached
    meta = await store.put(from_bytes(b"replica bytes"), ObjectSpec(name="a/b"))
    data = b"".join([c async for c in store.get(meta.id)])
    assert data == b"replica bytes"
    await stores.close()


async def test_a_host_id_resolves_through_the_configuration_with_decrypted_credentials(
    stores: NamedStores,
) -> None:
    """A bare id or host:<id> is the configured Host: address, login, clear password, base path."""
    for name in ("archive", "host:archive"):
        store = stores.store_for(name)
        assert isinstance(store, RemoteStore)
        location = store.location
        assert (location.scheme, location.host, location.port) == ("sftp", "127.0.0.1", 2222)
        assert (location.user, location.password) == ("keeper", "s3cret")
        assert location.path == "/replicas/"
        assert location.options == {"fingerPrint": "SHA256:abc", "usetmp": "yes"}
        assert "s3cret" not in store.name
        assert stores.backend_name(name) == "sftp://keeper@127.0.0.1:2222/replicas"
    await stores.close()


async def test_a_file_host_is_a_local_store_at_its_directory(
    stores: NamedStores, tmp_path: Path
) -> None:
    """A host of protocol file is a LocalStore at its Directory field."""
    store = stores.store_for("mirror")
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "m"
    assert stores.same("mirror", f"file://{tmp_path}/m")
    assert not stores.same("mirror", f"file://{tmp_path}/default")
    await stores.close()


async def test_a_changed_host_definition_opens_a_new_backend(tmp_path: Path) -> None:
    """When the host's definition changes, the next store_for builds a backend for the new one."""
    config = FixedConfig(ConfigView(hosts={"m": replication_host("m", protocol="memory")}))
    named = NamedStores(tmp_path, config=config)
    first = named.store_for("m")
    object.__setattr__(
        config,
        "view",
        ConfigView(hosts={"m": replication_host("m", protocol="memory", address="elsewhere")}),
    )
    second = named.store_for("m")
    assert second is not first
    assert isinstance(second, RemoteStore)
    assert second.location.host == "elsewhere"
    await named.close()


@pytest.mark.parametrize(
    ("name", "field", "why"),
    [
        ("gopher://x/y", "store", "no transfer module"),
        ("file://relative/path", "store", "absolute path"),
        ("not a name!", "store", "neither a store URL nor a host id"),
        ("host:", "store", "neither a store URL nor a host id"),
        ("nosuch", "store", "no such host"),
        ("off", "store", "not active"),
        ("bare", "store", "needs a directory"),
    ],
)
def test_names_that_cannot_be_resolved_are_refused_naming_the_field(
    stores: NamedStores, name: str, field: str, why: str
) -> None:
    """Every unresolvable name raises ConfigurationError naming the field and the reason."""
    with pytest.raises(ConfigurationError) as caught:
        stores.store_for(name)
    assert caught.value.field == field
    assert why in caught.value.reason
    assert not stores.same(name, "file:///anything")


def test_without_configuration_or_key_a_host_cannot_be_used(tmp_path: Path, key_file: Path) -> None:
    """A host name needs a configuration; a host with credentials needs the operator key."""
    with pytest.raises(ConfigurationError, match="no configuration"):
        NamedStores(tmp_path).store_for("archive")
    host = replication_host("sec", protocol="memory", credentials=encrypt("pw", key_file))
    keyless = NamedStores(tmp_path, config=FixedConfig(ConfigView(hosts={"sec": host})))
    with pytest.raises(ConfigurationError) as caught:
        keyless.store_for("sec")
    assert caught.value.field == "credentials"


def test_a_store_host_at_an_ipv6_address_keeps_its_port_and_its_address_base(
    tmp_path: Path, key_file: Path
) -> None:
    """``[::1]:2222/vault`` is host ``::1`` port 2222, and a relative Directory goes under
    ``/vault`` (the one Host -> Location of ``protocols.location``)."""
    host = replication_host("v6", protocol="sftp", address="[::1]:2222/vault", directory="replicas")
    view = ConfigView(hosts={"v6": host})
    stores = NamedStores(tmp_path, config=FixedConfig(view), key_file=key_file)
    assert stores.backend_name("v6") == "sftp://[::1]:2222/vault/replicas"
