"""The transcript search index: interface, SQLite FTS5 backend, query language, worker.

`index_of(services)` is the one index of a process (SQLite under the data dir).
"""

from __future__ import annotations

from pipeline.services import Services
from recordings.index.base import TranscriptIndex
from recordings.index.sqlite import SqliteIndex

INDEX_FILE = "index.sqlite"


def index_of(services: Services) -> TranscriptIndex:
    """The process-wide transcript index, opened on first use."""

    def open_index() -> TranscriptIndex:
        return SqliteIndex(services.settings.data_dir / INDEX_FILE)

    return services.component("index", open_index)
