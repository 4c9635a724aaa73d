"""The feedback store on SQLite and on a real PostgreSQL server: migrations, validation, reading back."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import inspect, text

from feedback.store import FeedbackError, FeedbackItem, FeedbackStore

CONTEXT = "Miriam Holt built the lighthouse in 1874. It stands on the northern cape."


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'feedback.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = FeedbackStore(url)
    store.migrate()
    with store.engine.begin() as connection:  # the session's PostgreSQL may hold other tests' rows
        connection.execute(text("DELETE FROM feedback"))
    yield store
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM feedback"))
    store.dispose()


def item(**changes) -> FeedbackItem:
    values = dict(question="When was it built?", context=CONTEXT, answer_start=0, answer_end=11, verdict="wrong",
                  correction_start=36, correction_end=40)
    return FeedbackItem(**(values | changes))


def test_items_are_stored_and_read_back_in_order(store):
    first = store.add(item())
    second = store.add(item(verdict="correct", correction_start=None, correction_end=None))
    rows = store.items()
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["context"] == CONTEXT and rows[0]["verdict"] == "wrong"
    assert CONTEXT[rows[0]["correction_start"]:rows[0]["correction_end"]] == "1874"
    assert store.items(after=first) == rows[1:]
    assert store.count() == {"wrong": 1, "correct": 1}
    assert store.delete(first) and not store.delete(first)
    assert [r["id"] for r in store.items()] == [second]


def test_migrating_twice_changes_nothing(store):
    store.migrate()
    columns = {c["name"] for c in inspect(store.engine).get_columns("feedback")}
    assert {"question", "context", "verdict", "correction_start", "context_sha256"} <= columns
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"


@pytest.mark.parametrize("changes, field", [
    ({"answer_end": len(CONTEXT) + 1}, "answer"),
    ({"answer_start": 5, "answer_end": 4}, "answer"),
    ({"verdict": "maybe"}, "verdict"),
    ({"verdict": "correct"}, "correction"),  # a correction of a correct answer
    ({"correction_start": 40, "correction_end": 40}, "correction"),
    ({"correction_start": 0, "correction_end": 11}, "correction"),  # the span marked wrong itself
    ({"question": "   "}, "question"),
])
def test_bad_items_are_refused_and_nothing_is_stored(store, changes, field):
    with pytest.raises(FeedbackError) as raised:
        store.add(item(**changes))
    assert raised.value.field == field
    assert store.items() == []


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.migrate()
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
    assert sqlite3.connect(tmp_path / "feedback.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_lose_nothing(store):
    errors = []

    def write(worker: int) -> None:
        try:
            for i in range(25):
                store.add(item(question=f"worker {worker} question {i}?"))
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    questions = {r["question"] for r in store.items(limit=1000)}
    assert len(questions) == 100
