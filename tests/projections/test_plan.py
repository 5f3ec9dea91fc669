"""Multi-row statements: which groups of writes may share one statement, how their rows and
parameters are laid out, and that the tables they give equal those of row-by-row writes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bus.topics import ORDERS_PREFIX, SCHEDULER_SNAPSHOTS, event_topics
from projections import projection as projection_module
from projections.db import connect
from projections.handlers import plan as plan_module
from projections.handlers.base import FREE, Write
from projections.handlers.plan import Statement, Step, plan, statements
from projections.migrate import migrate
from projections.projection import Projection
from projections.projector import topic_pattern
from tests.projections import stream
from tests.projections.support import create_topics, drop, publish, snapshot
from tests.projections.test_projector import fetch_all

UPSERT = "INSERT INTO t AS x (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
INSERT_ONLY = "INSERT INTO h (id, v) VALUES (%s, date_trunc('minute', %s::timestamptz))"
CTE = (
    "WITH h AS (INSERT INTO h (id, s) VALUES (%s, 'EXEC') ON CONFLICT DO NOTHING)"
    " INSERT INTO t AS x (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
)


def test_distinct_keys_share_one_numbered_statement() -> None:
    """Keyed writes of one layer become one statement with a row per write, numbered $n."""
    [statement] = statements(Step(UPSERT, [(1, "a"), (2, "b"), (3, "c")]))
    assert statement == Statement(
        "INSERT INTO t AS x (k, v) VALUES ($1, $2), ($3, $4), ($5, $6)"
        " ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
        [(1, "a", 2, "b", 3, "c")],
        numbered=True,
    )


def test_rows_of_each_values_list_take_their_own_parameters() -> None:
    """In a statement with two VALUES lists, every row of the first takes its parameters
    first, then every row of the second; quoted text and nested calls stay whole."""
    [statement] = statements(Step(CTE, [("e1", 1, "a"), ("e2", 2, "b")]))
    assert statement.sql == (
        "WITH h AS (INSERT INTO h (id, s) VALUES ($1, 'EXEC'), ($2, 'EXEC') ON CONFLICT DO NOTHING)"
        " INSERT INTO t AS x (k, v) VALUES ($3, $4), ($5, $6)"
        " ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
    )
    assert statement.params == [("e1", "e2", 1, "a", 2, "b")]
    [nested] = statements(Step(INSERT_ONLY, [(1, "x"), (2, "y")], distinct=False))
    assert nested.sql == (
        "INSERT INTO h (id, v) VALUES ($1, date_trunc('minute', $2::timestamptz)),"
        " ($3, date_trunc('minute', $4::timestamptz))"
    )


def test_free_upserts_and_other_statements_run_row_by_row() -> None:
    """An upsert whose keys may repeat (FREE writes), an UPDATE, and a single write keep the
    row-by-row statement."""
    free = Step(UPSERT, [(1, "a"), (1, "b")], distinct=False)
    update = Step("UPDATE t SET v = %s WHERE k = %s", [("a", 1), ("b", 2)])
    single = Step(UPSERT, [(1, "a")])
    for step in (free, update, single):
        assert list(statements(step)) == [Statement(step.sql, step.params, numbered=False)]


def test_plan_marks_steps_of_free_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step holding FREE writes is not distinct; a large group is split under the
    parameter limit, rows kept in order."""
    steps = plan([Write(UPSERT, (1, "a"), FREE), Write(UPSERT, (1, "b"), FREE)])
    assert [s.distinct for s in steps] == [False]
    assert plan([Write(UPSERT, (1, "a"), ("t", 1))])[0].distinct
    monkeypatch.setattr(plan_module, "MAX_PARAMS", 4)
    chunks = list(statements(Step(UPSERT, [(1, "a"), (2, "b"), (3, "c")])))
    assert [c.params for c in chunks] == [[(1, "a", 2, "b")], [(3, "c")]]


def _row_by_row(step: Step) -> Iterator[Statement]:
    yield Statement(step.sql, step.params, numbered=False)


@pytest.mark.kafka
@pytest.mark.postgres
async def test_multi_row_statements_give_the_tables_of_row_by_row_writes(
    kafka: str, postgres: str, schema: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The realistic stream projected with multi-row statements leaves every table equal,
    row for row, to the same stream projected one statement per write."""
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    await publish(kafka, prefix, stream.events(300))
    records = await fetch_all(kafka, topics)
    other = f"{schema}_rows"
    await migrate(postgres, other)
    numbered: list[int] = []

    def counted(step: Step) -> Iterator[Statement]:
        for statement in statements(step):
            numbered.extend(len(step.params) for _ in range(statement.numbered))
            yield statement

    try:
        for target in (schema, other):
            monkeypatch.setattr(
                projection_module, "statements", counted if target == schema else _row_by_row
            )
            conn = await connect(postgres, target)
            try:
                projection = Projection(conn, name="plan")
                for i in range(0, len(records), 700):
                    await projection.apply(records[i : i + 700])
            finally:
                await conn.close()
        multi, rows = await snapshot(postgres, schema), await snapshot(postgres, other)
        assert multi == rows
        assert len(numbered) > 50  # multi-row statements did run
        assert max(numbered) > 20
        assert sum(len(r) for r in multi.values()) > 1000
    finally:
        await drop(postgres, other)


def test_the_projector_reads_every_event_topic_and_not_the_scheduler_snapshots() -> None:
    """The projector's and a rebuild's topic pattern takes every fixed event topic and every
    orders topic, never the scheduler's snapshots (a cache of its state, not events: read as
    events they were refused as unknown schemas)."""
    pattern = re.compile(topic_pattern())
    assert all(pattern.match(name) for name in event_topics())
    assert pattern.match(f"{ORDERS_PREFIX}asia")
    assert not pattern.match(SCHEDULER_SNAPSHOTS)
    assert SCHEDULER_SNAPSHOTS not in event_topics()
