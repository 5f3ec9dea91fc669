"""Fixtures of the mailer tests: a real SMTP server (aiosmtpd) on 127.0.0.1 that records what
it accepts and refuses recipients at ``refused.test`` for good (550) and at ``busy.test`` for
now (450), plus helpers to make events and configuration."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from bus.events.base import Envelope
from tests.conftest import free_port


@dataclass(frozen=True)
class Received:
    """One mail as the server got it."""

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())


@dataclass
class Recorder:
    """The aiosmtpd handler: keeps every accepted mail (called from the server's thread)."""

    mails: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.endswith("@refused.test"):
            return "550 5.1.1 mailbox unavailable"
        if address.endswith("@busy.test"):
            return "450 4.2.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.mails.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), parsed))
        return "250 Message accepted"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.mails if address in m.recipients]


class MailServer:
    """An aiosmtpd server on 127.0.0.1:``port``, started and stopped on demand."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.recorder = Recorder()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture(scope="module")
def smtp() -> Iterator[MailServer]:
    """A running SMTP server for the module."""
    server = MailServer()
    server.start()
    yield server
    server.stop()


def envelope(correlation: str = "tr-1") -> Envelope:
    """A fresh envelope (unique event id, now)."""
    return Envelope(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        source="tests/mailer",
        correlation_id=correlation,
    )
