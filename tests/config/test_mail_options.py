"""Validation of the e-mail notification keys (``mail.*``) of destinations and hosts."""

from __future__ import annotations

import pytest

from bus.config.validate import validate
from bus.config.yamlio import load
from bus.errors import ConfigurationError
from tests.config import factories as f

GOOD_DESTINATION = {
    "mail.to": "ops@meteo.fr, duty-desk@meteo.fr",
    "mail.onStart": "no",
    "mail.onEnd": "yes",
    "mail.onError": "TRUE",
    "mail.onUpdate": "false",
}
GOOD_HOST = {
    "mail.to": "ftp-admin@example.org",
    "mail.onSuccess": "no",
    "mail.onError": "yes",
    "mail.notifyOnce": "yes",
}


def test_good_mail_keys_pass() -> None:
    """Every known mail key with a valid value is accepted on destinations and hosts."""
    validate(f.destination(properties=GOOD_DESTINATION))
    validate(f.host(options=GOOD_HOST))
    validate(f.destination(properties={"mail.to": "ecpds@localhost"}))


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"mail.onSuccess": "yes"}, "destination.properties.mail.onSuccess"),
        ({"mail.notifyOnce": "yes"}, "destination.properties.mail.notifyOnce"),
        ({"mail.cc": "a@b.org"}, "destination.properties.mail.cc"),
        ({"mail.to": "not-an-address"}, "destination.properties.mail.to"),
        ({"mail.to": "ops@meteo.fr, bad address@x.org"}, "destination.properties.mail.to"),
        ({"mail.to": "a@b.org;c@d.org"}, "destination.properties.mail.to"),
        ({"mail.to": " , "}, "destination.properties.mail.to"),
        ({"mail.onEnd": "maybe"}, "destination.properties.mail.onEnd"),
        ({"mail.onStart": "1"}, "destination.properties.mail.onStart"),
        ({"mail.onUpdate": ""}, "destination.properties.mail.onUpdate"),
    ],
)
def test_bad_destination_mail_keys_refused(properties: dict[str, str], field: str) -> None:
    """An unknown mail key, a bad address or a non-boolean flag of a destination is refused by
    name."""
    with pytest.raises(ConfigurationError) as caught:
        validate(f.destination(properties=properties))
    assert caught.value.field == field
    assert caught.value.reason


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"mail.onStart": "yes"}, "host.options.mail.onStart", "unknown mail key"),
        ({"mail.onUpdate": "yes"}, "host.options.mail.onUpdate", "unknown mail key"),
        ({"mail.to": "root@"}, "host.options.mail.to", "not an e-mail address"),
        ({"mail.to": "<x@y.org>"}, "host.options.mail.to", "not an e-mail address"),
        ({"mail.notifyOnce": "always"}, "host.options.mail.notifyOnce", "yes, no, true or false"),
        ({"mail.onError": "on"}, "host.options.mail.onError", "yes, no, true or false"),
    ],
)
def test_bad_host_mail_options_refused(options: dict[str, str], field: str, words: str) -> None:
    """An unknown mail key, a bad address or a non-boolean flag of a host is refused by name,
    with a reason saying what is wrong."""
    with pytest.raises(ConfigurationError) as caught:
        validate(f.host(options=options))
    assert caught.value.field == field
    assert words in caught.value.reason


def test_other_keys_are_not_mail_keys() -> None:
    """Keys outside ``mail.*`` are not held to the mail rules: a protocol option passes, a
    name nothing reads is refused as an unknown option, not as a mail key."""
    validate(f.host(options={"ftp.passive": "yes"}))
    with pytest.raises(ConfigurationError) as caught:
        validate(f.host(options={"mailbox": "x"}))
    assert caught.value.field == "host.options.mailbox"
    assert "unknown option" in caught.value.reason
    with pytest.raises(ConfigurationError) as caught:
        validate(f.destination(properties={"mailing.list": "anything"}))
    assert caught.value.field == "destination.properties.mailing.list"
    assert "unknown property" in caught.value.reason


def test_yaml_booleans_are_accepted() -> None:
    """YAML's bare yes/true for a mail flag load as a valid value (``ecpds config apply``)."""
    document = load(
        "destinations:\n"
        "  - name: meteo-fr\n"
        "    type: dissemination\n"
        "    transfer_group: default\n"
        "    properties:\n"
        "      mail.to: ops@meteo.fr\n"
        "      mail.onEnd: yes\n"
        "      mail.onError: true\n"
    )
    (destination,) = document.entities
    validate(destination)
    assert destination.properties["mail.onEnd"] == "true"  # type: ignore[union-attr]
