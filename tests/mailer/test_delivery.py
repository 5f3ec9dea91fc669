"""Delivering one mail: SMTP answers classified retriable or permanent against a real aiosmtpd
server, SMTP login with the password from a file, the .eml outbox, and the mail settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from bus.errors import ConfigurationError
from bus.settings import Settings
from consumers.mailer.core import Mail
from consumers.mailer.delivery import OutboxTransport, SmtpServer, SmtpTransport, message
from consumers.mailer.ports import DeliveryError
from consumers.mailer.runner import transport_for
from tests.conftest import free_port
from tests.mailer.conftest import MailServer, Recorder


def mail(*to: str, ident: str = "e1") -> Mail:
    return Mail(
        to=to,
        subject="[ecpds] meteo-fr: transfer of out/a.grib DONE",
        body="Transfer id: t1\nTarget:      out/a.grib\n",
        message_id=f"<{ident}.destination.onEnd@ecpds>",
        occurred_at=datetime(2026, 11, 27, 12, 30, 5, tzinfo=UTC),
        rule="destination.onEnd",
    )


def smtp_to(server: MailServer, **kw: Any) -> SmtpTransport:
    return SmtpTransport(SmtpServer.from_url(server.url), **kw)


async def test_accepted_mail_reaches_every_recipient(smtp: MailServer) -> None:
    """A mail is sent once to all its recipients, with its subject, body and Message-ID."""
    await smtp_to(smtp).deliver(message(mail("x1@meteo.fr", "x2@meteo.fr"), "ecpds@test.local"))
    (got,) = smtp.recorder.to("x1@meteo.fr")
    assert got.recipients == ("x1@meteo.fr", "x2@meteo.fr")
    assert got.subject == "[ecpds] meteo-fr: transfer of out/a.grib DONE"
    assert "Target:      out/a.grib" in got.body
    assert got.message["Message-ID"] == "<e1.destination.onEnd@ecpds>"
    assert got.message["Auto-Submitted"] == "auto-generated"


async def test_recipient_refused_for_good_is_permanent(smtp: MailServer) -> None:
    """A 550 for the only recipient is a permanent failure naming the server's reason."""
    with pytest.raises(DeliveryError) as caught:
        await smtp_to(smtp).deliver(message(mail("nobody@refused.test"), "ecpds@test.local"))
    assert not caught.value.retriable
    assert "550" in caught.value.reason
    assert "nobody@refused.test" in caught.value.reason


async def test_recipient_refused_for_now_is_retriable(smtp: MailServer) -> None:
    """A 450 for the only recipient is retriable."""
    with pytest.raises(DeliveryError) as caught:
        await smtp_to(smtp).deliver(message(mail("x@busy.test"), "ecpds@test.local"))
    assert caught.value.retriable


async def test_partly_refused_mail_goes_to_the_others(smtp: MailServer) -> None:
    """With one recipient refused and one accepted the mail is delivered to the accepted one
    and the refusal recorded, not raised (retrying would mail the other twice)."""
    transport = smtp_to(smtp)
    await transport.deliver(message(mail("ok@meteo.fr", "gone@refused.test"), "e@test.local"))
    (got,) = smtp.recorder.to("ok@meteo.fr")
    assert got.recipients == ("ok@meteo.fr",)
    assert transport.refused == [("gone@refused.test", "550 5.1.1 mailbox unavailable")]


async def test_no_server_is_retriable() -> None:
    """Nothing listening on the port is a retriable failure."""
    transport = SmtpTransport(SmtpServer("127.0.0.1", free_port(), False, False), timeout=2)
    with pytest.raises(DeliveryError) as caught:
        await transport.deliver(message(mail("a@b.org"), "e@test.local"))
    assert caught.value.retriable


class Login:
    """Accepts one login and password (an aiosmtpd authenticator)."""

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"mailer",
            b"s3cret-from-file",
        )
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_smtp() -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        authenticator=Login(),
        auth_required=True,
        auth_require_tls=False,  # plain on loopback, for the test only
    )
    controller.start()
    yield port, recorder
    controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_login_uses_the_password_file(
    auth_smtp: tuple[int, Recorder], tmp_path: Path
) -> None:
    """With ECPDS_SMTP_USER and ECPDS_SMTP_PASSWORD_FILE the mailer logs in with the password
    read from the file; a wrong password is a retriable failure (the mail waits for a fix)."""
    port, recorder = auth_smtp
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-from-file\n")
    env = {
        "ECPDS_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "ECPDS_SMTP_USER": "mailer",
        "ECPDS_SMTP_PASSWORD_FILE": str(secret),
    }
    transport = transport_for(Settings.from_env(env))
    await transport.deliver(message(mail("a@meteo.fr"), "ecpds@test.local"))
    assert [m.recipients for m in recorder.mails] == [("a@meteo.fr",)]
    assert "s3cret" not in transport.name
    secret.write_text("wrong")
    with pytest.raises(DeliveryError) as caught:
        await transport_for(Settings.from_env(env)).deliver(message(mail("b@x.org"), "e@t.l"))
    assert caught.value.retriable
    assert "s3cret" not in caught.value.reason
    assert "wrong" not in caught.value.reason


async def test_outbox_writes_whole_files_once_per_message(tmp_path: Path) -> None:
    """The outbox holds one complete .eml per Message-ID (a redelivered mail replaces its
    copy) and no temporary file."""
    outbox = OutboxTransport(tmp_path / "outbox")
    await outbox.deliver(message(mail("a@b.org"), "ecpds@localhost"))
    await outbox.deliver(message(mail("a@b.org"), "ecpds@localhost"))
    await outbox.deliver(message(mail("a@b.org", ident="e2"), "ecpds@localhost"))
    names = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert names == [
        "20261127T123005-e1.destination.onEnd_ecpds.eml",
        "20261127T123005-e2.destination.onEnd_ecpds.eml",
    ]
    parsed = message_from_bytes(
        (tmp_path / "outbox" / names[0]).read_bytes(), policy=policy.default
    )
    assert parsed["To"] == "a@b.org"
    assert parsed["From"] == "ecpds@localhost"


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "starttls"),
    [
        ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, False, False),
        ("smtps://mail.example.org", "mail.example.org", 465, True, False),
        ("smtp+starttls://mail.example.org:587", "mail.example.org", 587, False, True),
    ],
)
def test_smtp_urls(url: str, host: str, port: int, tls: bool, starttls: bool) -> None:
    """The three URL schemes give host, port (with the scheme's default) and TLS mode."""
    settings = Settings.from_env({"ECPDS_SMTP_URL": url})
    assert settings.smtp_url == url
    assert SmtpServer.from_url(url) == SmtpServer(host, port, tls, starttls)


@pytest.mark.parametrize(
    "url", ["http://mail.example.org", "smtp://", "mail.example.org:25", "smtp://u:pw@host:25"]
)
def test_bad_smtp_urls_are_refused(url: str) -> None:
    """A URL with another scheme, no host or credentials in it is refused, naming the variable
    and never quoting a password."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"ECPDS_SMTP_URL": url})
    assert caught.value.field == "ECPDS_SMTP_URL"
    assert "pw" not in caught.value.reason


def test_mail_defaults() -> None:
    """Without mail variables: no SMTP (outbox), sender ecpds@localhost."""
    settings = Settings.from_env({})
    assert settings.smtp_url is None
    assert settings.mail_from == "ecpds@localhost"
    assert Settings.from_env({"ECPDS_MAIL_FROM": "ops@x.org"}).mail_from == "ops@x.org"
