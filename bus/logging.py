"""Structured logs for every ecpds process (structlog).

``configure`` is called once at process start: console renderer for people, JSON lines for
machines (``ECPDS_LOG_FORMAT=json``). ``bind_event`` binds the event and correlation ids to the
context so one grep follows a file from provider to destination. Secrets never go into a log
call: adapters log ``Location.url``, which carries no password.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

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
