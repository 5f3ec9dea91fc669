"""Delivering mails: an RFC 5322 message from a ``core.Mail``, sent over SMTP or written to a
directory of ``.eml`` files.

- ``SmtpTransport`` (aiosmtplib) for ``smtp://host[:port]`` (plain, port 25 by default),
  ``smtps://`` (implicit TLS, 465) and ``smtp+starttls://`` (STARTTLS required, 587), with an
  optional login whose password is given as a value read from a file, never from the URL, and
  never logged. A refused connection, a timeout, a 4xx answer or a failed login is retriable
  (the mail waits until the server or its configuration is fixed); a 5xx answer (recipient
  refused, message rejected) is permanent. Recipients refused one by one while others
  accepted the mail are reported in ``SmtpTransport.refused`` and logged, not retried (the
  others already have it).
- ``OutboxTransport`` writes ``<occurred>-<id>.eml`` into a folder (the embedded default,
  ``<ECPDS_VAR>/mail/outbox``) by writing a hidden temporary file and renaming it, so a reader
  never sees half a mail; the name comes from the ``Message-ID``, so a mail made again for a
  redelivered event replaces its earlier copy instead of adding one.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aiosmtplib

from bus.logging import get_logger
from consumers.mailer.core import Mail
from consumers.mailer.ports import DeliveryError

log = get_logger(__name__)
DEFAULT_PORTS: Final = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def message(mail: Mail, sender: str) -> EmailMessage:
    """The RFC 5322 message of ``mail``, from ``sender`` (plain text, UTF-8)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(mail.to)
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(mail.occurred_at)
    msg["Message-ID"] = mail.message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    msg.set_content(mail.body)
    return msg


@dataclass(frozen=True)
class SmtpServer:
    """Where the SMTP server is and how to talk to it (from ``ECPDS_SMTP_URL``)."""

    host: str
    port: int
    use_tls: bool
    start_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an SMTP URL: {scheme}://...")
        port = parts.port or DEFAULT_PORTS[scheme]
        return cls(parts.hostname, port, scheme == "smtps", scheme == "smtp+starttls")

    def __str__(self) -> str:
        mode = "tls" if self.use_tls else "starttls" if self.start_tls else "plain"
        return f"smtp {self.host}:{self.port} ({mode})"


class SmtpTransport:
    """Sends mails to one SMTP server (see the module docstring)."""

    def __init__(
        self,
        server: SmtpServer,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._server = server
        self._user = user
        self._password = password
        self._timeout = timeout
        self.refused: list[tuple[str, str]] = []  # (recipient, server answer), permanent

    @property
    def name(self) -> str:
        return str(self._server)

    async def deliver(self, message: EmailMessage) -> None:
        try:
            errors, _ = await aiosmtplib.send(
                message,
                hostname=self._server.host,
                port=self._server.port,
                use_tls=self._server.use_tls,
                start_tls=self._server.start_tls,
                username=self._user,
                password=self._password,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            answers = [(r.recipient, r.code, r.message) for r in error.recipients]
            retriable = any(400 <= code < 500 for _, code, _ in answers)
            reason = "; ".join(f"{who}: {code} {text}" for who, code, text in answers)
            raise DeliveryError(f"recipients refused: {reason}", retriable=retriable) from None
        except aiosmtplib.SMTPAuthenticationError as error:
            # a configuration problem: the mails wait until the operator fixes the login
            raise DeliveryError(f"login refused: {error.code}", retriable=True) from None
        except aiosmtplib.SMTPResponseException as error:
            retriable = not 500 <= error.code < 600
            raise DeliveryError(f"{error.code} {error.message}", retriable=retriable) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            # cannot connect, disconnected, timed out, TLS not offered: the server may come back
            raise DeliveryError(f"{type(error).__name__}: {error}", retriable=True) from None
        for recipient, answer in errors.items():
            self.refused.append((recipient, f"{answer.code} {answer.message}"))
            log.error(
                "mail recipient refused",
                recipient=recipient,
                message_id=message["Message-ID"],
                reason=f"{answer.code} {answer.message}",
            )


class OutboxTransport:
    """Writes each mail as an ``.eml`` file into ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def name(self) -> str:
        return f"outbox {self.folder}"

    async def deliver(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as error:  # disk full, permissions: may be fixed, so try again
            raise DeliveryError(f"cannot write to {self.folder}: {error}", retriable=True) from None

    def path_of(self, message: EmailMessage) -> Path:
        """The file ``message`` is written to."""
        when = _stamp(message)
        ident = _UNSAFE.sub("_", str(message["Message-ID"] or "").strip("<>")) or "mail"
        return self.folder / f"{when}-{ident}.eml"

    def _write(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path_of(message)
        temporary = final.with_name(f".{final.name}.tmp")
        with temporary.open("wb") as out:
            out.write(message.as_bytes())
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(final)


def _stamp(message: EmailMessage) -> str:
    date = message["Date"]
    parsed = getattr(date, "datetime", None) if date is not None else None
    return parsed.strftime("%Y%m%dT%H%M%S") if parsed is not None else "00000000T000000"
