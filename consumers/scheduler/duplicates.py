"""Duplicate holding (OpenECPDS ``scheduler.requeueon``): of the transfers of one destination
with the same target, one is sent and the others are put on HOLD "Duplicate file found".

The destination's properties say when it applies: ``scheduler.requeueon`` (the rule, see
``bus.templates.requeueon``; it holds when the transfer ``1`` should be sent rather than the
other one ``2``), ``scheduler.requeuepattern`` (a regex the target must match, default all)
and ``scheduler.requeueignore`` (a regex of targets left alone). It is decided when a transfer
is about to be ordered, against the other transfers of its target that are waiting, running or
delivered: the winner is the one the rule prefers; when the rule prefers neither (or both), the
one already processed (running or delivered), then the one queued last (the reference's highest
id). A waiting loser is held; a transfer that loses to a running or delivered one is held
instead of being sent again. An operator may release a held one: it is then weighed again.
"""

from __future__ import annotations

import functools
import re

from bus.events.base import TransferStatus as S
from bus.events.config import Destination
from bus.templates.lexer import TemplateError
from bus.templates.requeueon import Rule, Value, compile_rule
from consumers.scheduler.lifecycle import ORDERABLE
from consumers.scheduler.state import TransferEntry

RULE = "scheduler.requeueon"
PATTERN = "scheduler.requeuepattern"
IGNORE = "scheduler.requeueignore"

_PROCESSED = frozenset({S.EXEC, S.DONE})
CONTENDING = ORDERABLE | _PROCESSED


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Rule | None:
    try:
        return compile_rule(source)
    except TemplateError:
        return None  # refused when configured; one read back from an older log is ignored


def rule_for(cfg: Destination, target: str) -> Rule | None:
    """The destination's duplicate rule if it applies to ``target``, else None."""
    source = cfg.properties.get(RULE)
    if not source:
        return None
    rule = _compiled(source)
    if rule is None:
        return None
    pattern, ignore = cfg.properties.get(PATTERN), cfg.properties.get(IGNORE)
    try:
        if pattern and re.search(pattern, target) is None:
            return None
        if ignore and re.search(ignore, target) is not None:
            return None
    except re.error:
        return None
    return rule


def winner(rule: Rule, e: TransferEntry, others: list[TransferEntry]) -> TransferEntry:
    """The transfer of ``e``'s target to send, of ``e`` and its contending ``others``."""
    best = e
    for other in others:
        if other.status in CONTENDING and _beats(rule, other, best):
            best = other
    return best


def _beats(rule: Rule, a: TransferEntry, b: TransferEntry) -> bool:
    a_wins, b_wins = rule.holds(_values(a, b)), rule.holds(_values(b, a))
    if a_wins != b_wins:
        return a_wins
    a_done, b_done = a.status in _PROCESSED, b.status in _PROCESSED
    if a_done != b_done:
        return a_done
    return (_time(a), a.transfer_id) > (_time(b), b.transfer_id)


def _time(e: TransferEntry) -> int:
    """When the transfer was queued (epoch ms): its first schedule, not a later delay."""
    return int((e.scheduled_time or e.queue_time).timestamp() * 1000)


def _values(one: TransferEntry, two: TransferEntry) -> dict[str, Value]:
    return {
        "time1": _time(one),
        "size1": one.size,
        "time2": _time(two),
        "size2": two.size,
        "destination": one.destination,
        "target": one.target,
    }


def reason(kept: TransferEntry) -> str:
    """The history line of a transfer held because ``kept`` is sent instead."""
    return f"Duplicate file found: transfer {kept.transfer_id} ({kept.status}) is sent instead"


__all__ = ["CONTENDING", "IGNORE", "PATTERN", "RULE", "reason", "rule_for", "winner"]
