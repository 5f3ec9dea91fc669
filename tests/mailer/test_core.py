"""The mailer's rules: which event mails whom, what the mail says, notify-once."""

from __future__ import annotations

from typing import Any

from bus.config.view import ConfigView
from bus.events.base import DestinationStatus
from bus.events.transfers import (
    DestinationStatusChanged,
    TransferFailed,
    TransferQueued,
    TransferStarted,
    TransferSucceeded,
)
from consumers.mailer import core
from tests.bus.samples import sample
from tests.config import factories as f
from tests.mailer.conftest import envelope

DEST = "meteo-fr"
HOST = "ftp-1"
ALL_DESTINATION = {
    "mail.to": "ops@meteo.fr, desk@meteo.fr",
    "mail.onStart": "yes",
    "mail.onEnd": "yes",
    "mail.onError": "yes",
    "mail.onUpdate": "yes",
}
ALL_HOST = {"mail.to": "admin@host.org", "mail.onSuccess": "yes", "mail.onError": "yes"}


def view(dest: dict[str, str] | None = None, host: dict[str, str] | None = None) -> ConfigView:
    return ConfigView(
        destinations={DEST: f.destination(DEST, properties=dest or {})},
        hosts={HOST: f.host(HOST, nickname="primary ftp", options=host or {})},
    )


def queued(tid: str = "tr-1", target: str = "out/file.grib") -> TransferQueued:
    return sample(
        TransferQueued, envelope=envelope(tid), transfer_id=tid, destination=DEST, target=target
    )


def started(tid: str = "tr-1") -> TransferStarted:
    return sample(
        TransferStarted, envelope=envelope(tid), transfer_id=tid, destination=DEST, host_id=HOST
    )


def succeeded(tid: str = "tr-1", **kw: Any) -> TransferSucceeded:
    fields: dict[str, Any] = {
        "envelope": envelope(tid),
        "transfer_id": tid,
        "destination": DEST,
        "host_id": HOST,
        "bytes_sent": 123456,
        "duration_ms": 2500,
        "remote_path": "/remote/out/file.grib",
    }
    return sample(TransferSucceeded, **{**fields, **kw})


def failed(tid: str = "tr-1", message: str = "connection refused") -> TransferFailed:
    return sample(
        TransferFailed,
        envelope=envelope(tid),
        transfer_id=tid,
        destination=DEST,
        host_id=HOST,
        error_class="ConnectionRefused",
        message=message,
        attempt=3,
    )


def run(state: core.MailerState, config: ConfigView, *events: Any) -> list[core.Mail]:
    mails: list[core.Mail] = []
    for event in events:
        mails += core.decide(state, config, event)
        core.evolve(state, config, event)
    return mails


def test_each_event_mails_the_destination_when_its_flag_is_on() -> None:
    """Started, succeeded, failed and status-changed each mail the destination's addresses
    under onStart, onEnd, onError and onUpdate."""
    status = sample(
        DestinationStatusChanged,
        envelope=envelope(),
        destination=DEST,
        new_status=DestinationStatus.HOLD,
        old_status=DestinationStatus.EXEC,
        reason="all hosts failed",
    )
    mails = run(core.MailerState(), view(ALL_DESTINATION), queued(), started(), succeeded())
    mails += run(core.MailerState(), view(ALL_DESTINATION), failed(), status)
    assert [m.rule for m in mails] == [
        "destination.onStart",
        "destination.onEnd",
        "destination.onError",
        "destination.onUpdate",
    ]
    assert all(m.to == ("ops@meteo.fr", "desk@meteo.fr") for m in mails)
    assert mails[0].subject == "[ecpds] meteo-fr: transfer of out/file.grib STARTED"
    assert mails[1].subject == "[ecpds] meteo-fr: transfer of out/file.grib DONE"
    assert mails[3].subject == "[ecpds] meteo-fr: destination status HOLD (was EXEC)"
    assert "all hosts failed" in mails[3].body


def test_flags_off_or_no_address_mail_nobody() -> None:
    """Without its flag, with the flag set to no, or without mail.to, nothing is mailed."""
    events = (queued(), started(), succeeded(), failed())
    assert run(core.MailerState(), view(), *events) == []
    no = {k: "no" for k in ALL_DESTINATION if k != "mail.to"} | {"mail.to": "a@b.org"}
    assert (
        run(core.MailerState(), view(no, {**ALL_HOST, "mail.onSuccess": "false"}), *events[:3])
        == []
    )
    flags_only = {k: v for k, v in ALL_DESTINATION.items() if k != "mail.to"}
    assert run(core.MailerState(), view(flags_only), *events) == []


def test_success_mails_the_host_with_the_transfer_facts() -> None:
    """A success mails the host's mail.to under onSuccess, with target, host, bytes, duration
    and time in the body."""
    (mail,) = run(core.MailerState(), view(host=ALL_HOST), queued(), succeeded())
    assert mail.rule == "host.onSuccess"
    assert mail.to == ("admin@host.org",)
    assert mail.subject == "[ecpds] host ftp-1: transfer of out/file.grib to meteo-fr DONE"
    for text in ("tr-1", "out/file.grib", "ftp-1 (primary ftp)", "123456", "2.500 s", "UTC"):
        assert text in mail.body


def test_failure_mail_names_the_error_without_credentials() -> None:
    """A failure mail carries the error class and message, with URL credentials masked."""
    event = failed(message="cannot connect to ftp://bob:hunter2@10.0.0.1/out: refused")
    (dest_mail, host_mail) = run(core.MailerState(), view(ALL_DESTINATION, ALL_HOST), event)
    assert dest_mail.subject == "[ecpds] meteo-fr: transfer of id tr-1 FAILED (attempt 3)"
    assert host_mail.rule == "host.onError"
    for mail in (dest_mail, host_mail):
        assert "ConnectionRefused: cannot connect to ftp://***@10.0.0.1/out" in mail.body
        assert "hunter2" not in mail.body
        assert "bob" not in mail.body


def test_notify_once_mails_the_first_error_until_a_success() -> None:
    """With notifyOnce, a host gets one error mail per run of failures: none for the next
    failures, and one again after a success ended the run."""
    config = view(host={**ALL_HOST, "mail.onSuccess": "no", "mail.notifyOnce": "yes"})
    state = core.MailerState()
    mails = run(state, config, failed("a"), failed("b"), failed("c"))
    assert [m.rule for m in mails] == ["host.onError"]
    assert run(state, config, succeeded("d")) == []  # onSuccess off: no mail, but run ended
    assert [m.rule for m in run(state, config, failed("e"), failed("f"))] == ["host.onError"]


def test_without_notify_once_every_error_mails_the_host() -> None:
    """Without notifyOnce every failure mails the host; the destination is not limited."""
    config = view(dest={"mail.to": "ops@meteo.fr", "mail.onError": "yes"}, host=ALL_HOST)
    mails = run(core.MailerState(), config, failed("a"), failed("b"))
    assert [m.rule for m in mails] == ["destination.onError", "host.onError"] * 2
    once = view(
        dest={"mail.to": "ops@meteo.fr", "mail.onError": "yes"},
        host={**ALL_HOST, "mail.notifyOnce": "true"},
    )
    mails = run(core.MailerState(), once, failed("a"), failed("b"))
    assert [m.rule for m in mails] == ["destination.onError", "host.onError", "destination.onError"]


def test_message_ids_are_stable_per_event_and_rule() -> None:
    """The same event gives the same Message-IDs (a redelivery is recognisable), another event
    other ones."""
    config = view(ALL_DESTINATION, ALL_HOST)
    event = succeeded()
    first = run(core.MailerState(), config, event)
    again = run(core.MailerState(), config, event)
    other = run(core.MailerState(), config, succeeded())
    assert [m.message_id for m in first] == [m.message_id for m in again]
    assert len({m.message_id for m in first + other}) == 4


def test_unknown_target_falls_back_to_remote_path() -> None:
    """A success whose queueing was not seen is named by its remote path."""
    (mail,) = run(
        core.MailerState(), view({"mail.to": "a@b.org", "mail.onEnd": "yes"}), succeeded()
    )
    assert "/remote/out/file.grib DONE" in mail.subject


def test_target_memory_is_bounded() -> None:
    """Only the latest ``limit`` targets are remembered."""
    state = core.MailerState(limit=2)
    run(state, view(), queued("a"), queued("b"), queued("c"))
    assert list(state.targets) == ["b", "c"]


def test_a_refused_mail_is_recorded_with_its_transfer_masked_reason_and_a_stable_id() -> None:
    """A mail refused for good becomes MailFailed naming the transfer, the rule, the recipients
    and the reason with credentials masked; made again, it keeps its event id."""
    event = succeeded("tr-9")
    [mail, *_] = core.decide(core.MailerState(), view(ALL_DESTINATION), event)
    reason = "550 relay ftp://bob:hunter2@relay.example refused"
    first = core.refused(mail, event, "DeliveryError", reason, event.envelope.occurred_at, "m/1")
    again = core.refused(mail, event, "DeliveryError", reason, event.envelope.occurred_at, "m/1")
    assert (first.destination, first.transfer_id, first.rule) == (DEST, "tr-9", mail.rule)
    assert first.recipients == mail.to
    assert first.mail_id == mail.message_id
    assert "hunter2" not in first.message
    assert "550 relay" in first.message
    assert first.envelope.causation_id == event.envelope.event_id
    assert first.envelope.event_id == again.envelope.event_id


def test_a_late_transfer_mails_the_destination_with_on_late() -> None:
    """A TransferLate of the destination mails its mail.to when mail.onLate is on (the
    product, the class, the prediction and how late), and nobody when it is off."""
    from datetime import UTC, datetime

    from bus.events.products import Lateness, Measure, TransferLate

    late = sample(
        TransferLate,
        envelope=envelope("tr-9"),
        destination=DEST,
        transfer_id="tr-9",
        stream="oper",
        time="00",
        step="24",
        type="fc",
        measure=Measure.TRANSFER,
        lateness=Lateness.VERY_LATE,
        predicted_at=datetime(2026, 12, 7, 1, 30, tzinfo=UTC),
        late_by_ms=45 * 60_000,
    )
    state = core.MailerState()
    (mail,) = core.decide(state, view({**ALL_DESTINATION, "mail.onLate": "yes"}), late)
    assert mail.to == ("ops@meteo.fr", "desk@meteo.fr")
    assert mail.subject == "[ecpds] meteo-fr: oper/00/24/fc transfer very late"
    assert "Late by:" in mail.body
    assert "45 min" in mail.body
    assert "2026-12-07 01:30:00" in mail.body
    assert mail.rule == "destination.onLate"
    assert core.decide(state, view(ALL_DESTINATION), late) == ()
