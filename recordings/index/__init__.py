"""The transcript search index: interface, SQLite FTS5 and PostgreSQL back-ends, query
language, worker.

`index_of(services)` is the one index of a process: SQLite under the data dir, or the
deployment's PostgreSQL when `CALLPIPE_DATABASE__URL` names one.
"""

from __future__ import annotations

from pipeline.database import postgres_of
from pipeline.services import Services
from recordings.index.base import TranscriptIndex
from recordings.index.postgres import PostgresIndex
from recordings.index.sqlite import SqliteIndex

INDEX_FILE = "index.sqlite"


def index_of(services: Services) -> TranscriptIndex:
    """The process-wide transcript index, opened on first use."""

    def open_index() -> TranscriptIndex:
        if services.settings.database.url is not None:
            return PostgresIndex(postgres_of(services))
        return SqliteIndex(services.settings.data_dir / INDEX_FILE)

    return services.component("index", open_index)
