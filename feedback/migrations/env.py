"""Alembic environment of the feedback store: runs on the connection FeedbackStore.migrate() passes."""

from alembic import context
from sqlalchemy import text

from feedback.store import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait for it (released at commit).
        connection.execute(text("SELECT pg_advisory_xact_lock(727100)"))
    context.run_migrations()
