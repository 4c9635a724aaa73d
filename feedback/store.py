"""The feedback store: users' verdicts on answers, in a real database (SQLAlchemy 2 Core, Alembic).

SQLite by default: one file (outputs/feedback.db), in WAL mode with a busy timeout, so gunicorn's
workers write side by side. PostgreSQL (psycopg 3) for several replicas, through a URL such as
postgresql+psycopg://user:password@host/db. The engine is made on first use in each process, never
inherited across gunicorn's fork (a connection pool must not be shared by two processes).

What is stored: the question, the context, the answer's offsets, the verdict (correct, wrong,
unanswerable), the corrected span when given, the model and version that answered, the request id
and where the item came from (api, form, label-studio). Nothing else: no address, no key.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Engine

DEFAULT_URL = "sqlite:///outputs/feedback.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERDICTS = ("correct", "wrong", "unanswerable")
SOURCES = ("api", "form", "label-studio")
SQLITE_BUSY_TIMEOUT_MS = 10_000

metadata = MetaData()
feedback_table = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("question", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("context_sha256", String(64), nullable=False, index=True),
    Column("answer_start", Integer, nullable=False),
    Column("answer_end", Integer, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("correction_start", Integer, nullable=True),
    Column("correction_end", Integer, nullable=True),
    Column("model", String(200), nullable=True),
    Column("model_version", String(100), nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("source", String(32), nullable=False),
)


class FeedbackError(ValueError):
    """An item that cannot be stored; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class FeedbackItem:
    question: str
    context: str
    answer_start: int
    answer_end: int
    verdict: str
    correction_start: int | None = None
    correction_end: int | None = None
    model: str | None = None
    model_version: str | None = None
    request_id: str | None = None
    source: str = "api"

    def validate(self) -> FeedbackItem:
        if not self.question.strip():
            raise FeedbackError("question", "must hold a non-whitespace character")
        if not self.context.strip():
            raise FeedbackError("context", "must hold a non-whitespace character")
        if self.verdict not in VERDICTS:
            raise FeedbackError("verdict", f"must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if self.source not in SOURCES:
            raise FeedbackError("source", f"must be one of {', '.join(SOURCES)}, got {self.source!r}")
        length = len(self.context)
        if not 0 <= self.answer_start <= self.answer_end <= length:
            raise FeedbackError("answer", f"start {self.answer_start} and end {self.answer_end} must satisfy "
                                f"0 <= start <= end <= {length} (the context's length)")
        corrected = (self.correction_start, self.correction_end)
        if corrected != (None, None):
            if self.verdict != "wrong":
                raise FeedbackError("correction", f"is only for a wrong answer, not a {self.verdict!r} one")
            start, end = corrected
            if start is None or end is None or not 0 <= start < end <= length:
                raise FeedbackError("correction", f"start {start} and end {end} must satisfy 0 <= start < end <= "
                                    f"{length} (the context's length)")
            if not self.context[start:end].strip():
                raise FeedbackError("correction", "the corrected span holds only whitespace")
            if corrected == (self.answer_start, self.answer_end):
                raise FeedbackError("correction", "is the very span marked wrong")
        return self

    @property
    def answer_text(self) -> str:
        return self.context[self.answer_start : self.answer_end]

    @property
    def correction_text(self) -> str | None:
        if self.correction_start is None or self.correction_end is None:
            return None
        return self.context[self.correction_start : self.correction_end]

    def row(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return values | {"created_at": datetime.now(UTC),
                         "context_sha256": hashlib.sha256(self.context.encode("utf-8", "surrogatepass")).hexdigest()}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers and one writer at a time, without blocking each other
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # a second writer waits instead of failing
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


class FeedbackStore:
    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """This process's engine, made on first use (after gunicorn forked the worker)."""
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                self._engine = make_engine(self.url)
                self._pid = os.getpid()
            return self._engine

    def migrate(self) -> None:
        """Brings the schema to the newest Alembic revision (a no-op when it is there)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def add(self, item: FeedbackItem) -> int:
        item.validate()
        with self.engine.begin() as connection:
            return int(connection.execute(insert(feedback_table).values(**item.row())).inserted_primary_key[0])

    def items(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        query = select(feedback_table).where(feedback_table.c.id > after).order_by(feedback_table.c.id).limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def delete(self, item_id: int) -> bool:
        with self.engine.begin() as connection:
            return connection.execute(delete(feedback_table).where(feedback_table.c.id == item_id)).rowcount > 0

    def count(self) -> dict[str, int]:
        query = select(feedback_table.c.verdict, func.count()).group_by(feedback_table.c.verdict)
        with self.engine.connect() as connection:
            return {verdict: int(n) for verdict, n in connection.execute(query)}

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
