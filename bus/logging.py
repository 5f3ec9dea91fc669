"""Structured logs for every ecpds process (structlog).

``configure`` is called once at process start: console renderer for people, JSON lines for
machines (``ECPDS_LOG_FORMAT=json``). ``bind_event`` binds the event and correlation ids to the
context so one grep follows a file from provider to destination. Secrets never go into a log
call: adapters log ``Location.url``, which carries no password.

A lost broker is said once, not once per attempt (rule "one line per outage"): aiokafka logs an
error for every failed connection and every request that could not be sent, several per second
per client; ``BrokerOutage`` lets the first through as "Kafka broker unreachable", then one
line a minute with the count of lines it held back, then "Kafka broker back" when a request
reaches a broker again. aiokafka's errors outside an outage pass unchanged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import aiokafka  # noqa: F401 - imported for its loggers, which ``BrokerOutage`` is put on
import structlog

from bus.settings import Settings


def configure(settings: Settings, *, stream: Any = None) -> None:
    """Set up structlog and the stdlib root logger for this process."""
    level = getattr(logging, settings.log_level)
    renderer: Any
    if settings.log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _merge_event,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream or sys.stderr)
    for noisy in ("aiokafka", "kafka", "faust", "mode", "amqtt", "asyncssh", "botocore", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    OUTAGE.install()


# what aiokafka says when it cannot reach a broker (its messages, as of aiokafka 0.12)
_UNREACHABLE = (
    "Unable connect",
    "Unable to connect",
    "Unable to update metadata",
    "Unable to request metadata",
    "Connect call failed",
    "Connection refused",
    "KafkaConnectionError",
    "Failed fetch messages",
    # a request that could not be sent to the group coordinator; not aiokafka's following
    # "Marking the coordinator dead" line, which also follows a reachable broker's answer
    # "not coordinator" (as a restarted broker gives while it loads its groups)
    "-- marking coordinator dead",
)
# aiokafka.conn's format (DEBUG) of a response read from a broker: the broker is back
_REACHED = "Response from"


class BrokerOutage(logging.Filter):
    """Throttles aiokafka's logs while no broker can be reached (see the module docstring).

    One instance is put on every ``aiokafka`` logger (a logger's filter sees only the records
    of that logger). During an outage aiokafka logs at DEBUG, so the first request that
    reaches a broker is seen; its other DEBUG records are dropped here."""

    EVERY = 60.0  # seconds between two lines of one outage
    # a request answered this soon after a failure is a straggler of a broker going down, not
    # its return: the outage ends at the first answer after this long without a failure
    SETTLE = 1.0

    def __init__(self, clock: Any = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self.since: float | None = None  # when the outage began; None: no outage
        self._said = 0.0  # when its last line was let through
        self._held = 0  # lines held back since then
        self._failed_at = 0.0  # when the outage's last failure was logged (or held)
        self._level = logging.WARNING  # aiokafka's level outside an outage

    def install(self) -> None:
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("aiokafka")]:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        if record.levelno < logging.WARNING:
            # the format, not the message: formatting a response costs as much as its size
            if self.since is not None and str(record.msg).startswith(_REACHED):
                if now - self._failed_at < self.SETTLE:
                    return False
                self._back(record, now)
                return True
            return self.since is None  # the DEBUG records let in to see the return
        if self.since is None:
            if not any(text in record.getMessage() for text in _UNREACHABLE):
                return True
            self.since, self._said, self._held, self._failed_at = now, now, 0, now
            aiokafka_logger = logging.getLogger("aiokafka")  # the client's own logger
            self._level = aiokafka_logger.level
            aiokafka_logger.setLevel(logging.DEBUG)
            _rewrite(record, "Kafka broker unreachable (said again once a minute): %s")
            return True
        self._failed_at = now
        if now - self._said < self.EVERY:
            self._held += 1
            return False
        held, self._said, self._held = self._held, now, 0
        _rewrite(
            record,
            f"Kafka broker still unreachable after {now - self.since:.0f} s "
            f"({held} lines held back): %s",
        )
        return True

    def _back(self, record: logging.LogRecord, now: float) -> None:
        assert self.since is not None
        lasted, held, self.since = now - self.since, self._held, None
        logging.getLogger("aiokafka").setLevel(self._level)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = f"Kafka broker back after {lasted:.0f} s ({held} lines held back)"
        record.args = ()


def _rewrite(record: logging.LogRecord, template: str) -> None:
    record.msg, record.args = template, (record.getMessage(),)


OUTAGE = BrokerOutage()  # one per process: every client's lines count toward one outage


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


# the event being handled by this task: one context variable set per event (structlog's own
# contextvars cost a variable per key and a scan to clear, for every event consumed), read
# only when a line is actually logged
_EVENT: ContextVar[dict[str, Any] | None] = ContextVar("ecpds_event", default=None)


def bind_event(event_id: str, correlation_id: str, **extra: Any) -> None:
    """Bind ids of the event being handled to every log line of this task."""
    _EVENT.set({"event_id": event_id, "correlation_id": correlation_id, **extra})


def clear_event() -> None:
    _EVENT.set(None)


def _merge_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    bound = _EVENT.get()
    if bound:
        for key, value in bound.items():
            event_dict.setdefault(key, value)
    return event_dict
