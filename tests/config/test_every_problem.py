"""Every problem of a command's fields at once (``ecpds destination add|edit --set ...``): the
fields that cannot be read and the validator's refusals of those that can, each named as the
operator wrote it."""

from __future__ import annotations

import pytest

from bus.config.validate import Problems
from bus.config.yamlio import build, with_fields
from bus.events.config import Destination
from tests.config import factories as f


def test_build_reports_unreadable_and_invalid_fields_together() -> None:
    """A duration that cannot be read and two values the validator refuses are all reported
    by one refusal, by their written names."""
    fields = {
        "name": "d1", "type": "dissemination", "transfer_group": "default",
        "retry_frequency": "soon", "max_connections": 0, "max_start": -3,
    }  # fmt: skip
    with pytest.raises(Problems) as refused:
        build(Destination, "destination", fields)
    named = [p.field for p in refused.value.problems]
    assert named == [
        "destination.retry_frequency",
        "destination.max_connections",
        "destination.max_start",
    ]


def test_edit_reports_every_problem_and_keeps_written_names() -> None:
    """An edit with an unreadable and an invalid value reports both; a duration written with
    ``_ms`` keeps that spelling, one written short is named short."""
    with pytest.raises(Problems) as refused:
        with_fields(f.destination("d1"), {"retry_frequency_ms": "x", "max_connections": 0})
    assert [p.field for p in refused.value.problems] == [
        "destination.retry_frequency_ms",
        "destination.max_connections",
    ]
    with pytest.raises(Problems) as short:
        with_fields(f.destination("d1"), {"retry_frequency": "x", "max_start": 0})
    assert [p.field for p in short.value.problems] == [
        "destination.retry_frequency",
        "destination.max_start",
    ]
