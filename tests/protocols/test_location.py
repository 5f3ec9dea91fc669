"""The one Host -> Location (``protocols.location``): every address form, base, option and field."""

from __future__ import annotations

import pytest

from bus.errors import ConfigurationError
from bus.events.config import EncryptedSecret
from protocols.base import Location
from protocols.location import Address, directory_base, location_for, parse_address
from tests.config.factories import host

ADDRESSES = [
    # address, host, port, base
    ("data.example", "data.example", None, ""),
    ("data.example:2222", "data.example", 2222, ""),
    ("10.0.0.5", "10.0.0.5", None, ""),
    ("10.0.0.5:21", "10.0.0.5", 21, ""),
    ("[::1]", "::1", None, ""),
    ("[::1]:2222", "::1", 2222, ""),
    ("[fe80::1:22]:65535", "fe80::1:22", 65535, ""),
    ("::1", "::1", None, ""),
    ("2001:db8::7:22", "2001:db8::7:22", None, ""),
    ("data.example:2222/incoming/today", "data.example", 2222, "/incoming/today"),
    ("data.example/incoming", "data.example", None, "/incoming"),
    ("10.0.0.5:21/in", "10.0.0.5", 21, "/in"),
    ("[::1]:2222/base", "::1", 2222, "/base"),
    ("[::1]/base", "::1", None, "/base"),
    ("::1/base", "::1", None, "/base"),
    ("s3.example:9000/bucket", "s3.example", 9000, "/bucket"),
    ("bucket", "bucket", None, ""),
    ("", "", None, ""),
]


@pytest.mark.parametrize(("address", "name", "port", "base"), ADDRESSES)
def test_every_address_form_gives_its_host_port_and_base(
    address: str, name: str, port: int | None, base: str
) -> None:
    """Names, IPv4, bracketed and bare IPv6 literals, with or without port and base path."""
    assert parse_address(address) == Address(name, port, base)


@pytest.mark.parametrize(
    "address",
    [
        *("h:", "h:abc", "h:0", "h:65536", "h:-1"),
        "h:\uff12\uff12",  # fullwidth digits: digits to str.isdigit, not to a socket
        *("[::1", "[]:22", "[::1]x", "[::1]:", "[::1]:x"),
    ],
)
def test_a_malformed_port_or_literal_is_refused_naming_the_field(address: str) -> None:
    """A bad port or an unclosed bracket is a configuration error on ``host.address``."""
    with pytest.raises(ConfigurationError) as refused:
        parse_address(address)
    assert refused.value.field == "host.address"


@pytest.mark.parametrize(
    ("address", "base", "root", "path"),
    [
        ("h", "", "/", "/"),  # neither: the root
        ("h", "", ".", "."),  # the backup's root: the login directory
        ("h/in", "", ".", "/in"),  # the address's base
        ("h", "/archive", ".", "/archive"),  # the Host Directory's base
        ("h/in", "sub", "/", "/in/sub"),  # a relative directory is under the address's base
        ("h/in", "/archive", "/", "/archive"),  # an absolute one wins
        ("h", "relative", "/", "relative"),
    ],
)
def test_the_path_joins_the_address_base_and_the_given_base(
    address: str, base: str, root: str, path: str
) -> None:
    """The address's base joined with the caller's base, else the caller's root."""
    assert location_for(host(address=address), None, base=base, root=root).path == path


def test_the_host_fields_become_the_location() -> None:
    """protocol -> lower-case scheme, address -> host and port, login and password as given."""
    target = host(
        protocol="SFTP",
        address="[2001:db8::5]:2222/incoming",
        login="alice",
        credentials=EncryptedSecret(key_id="k", ciphertext=b"x"),
    )
    location = location_for(target, "pw")
    assert (location.scheme, location.host, location.port, location.path) == (
        "sftp",
        "2001:db8::5",
        2222,
        "/incoming",
    )
    assert (location.user, location.password) == ("alice", "pw")
    assert "pw" not in repr(location)
    assert Location.parse(location.url).host == "2001:db8::5"  # the URL reads back
    assert location.url == "sftp://alice@[2001:db8::5]:2222/incoming"  # without the secret
    assert location_for(host(login=None), None).user is None


@pytest.mark.parametrize(
    ("protocol", "options", "expected"),
    [
        (
            "sftp",
            {"sftp.mkdirs": "no", "ectrans.connectTimeOut": "5s", "other": "1"},
            {"mkdirs": "no", "connectTimeOut": "5s", "other": "1"},
        ),
        ("ftps", {"ftp.passive": "no", "ftps.ssl": "yes"}, {"passive": "no", "ssl": "yes"}),
        ("https", {"http.mqttMode": "yes"}, {"mqttMode": "yes"}),
        ("az", {"azure.useMD5": "yes", "az.x": "1"}, {"useMD5": "yes", "x": "1"}),
        ("gs", {"gcs.project": "p"}, {"project": "p"}),
        ("sftp", {"ftp.passive": "no"}, {"ftp.passive": "no"}),  # another module's: kept whole
        ("mqtt", {"mqtt.topic": "t"}, {"topic": "t"}),  # not in the table: its own prefix
        ("sftp", {"acquisition.listMaxDirs": "3", "sftp.port": "22"}, {"port": "22"}),
    ],
)
def test_options_lose_their_module_prefix(
    protocol: str, options: dict[str, str], expected: dict[str, str]
) -> None:
    """Module prefixes (with their aliases) and ``ectrans.`` go; stage options are left out."""
    assert dict(location_for(host(protocol=protocol, options=options), None).options) == expected


def test_the_host_directory_as_a_base_is_its_first_usable_line_cut_at_the_first_dollar() -> None:
    """Lines starting with ``(`` (conditions) are skipped; a template part is cut off."""
    assert directory_base("/archive/$destination[name]/x") == "/archive/"
    assert directory_base("($host[name]==a) /skip\n\n  /data/backup  \n/other") == "/data/backup"
    assert directory_base("") == ""
    assert directory_base("$dataFile[original]") == ""
