"""The transcript search index: interface, SQLite FTS5 backend, query language, worker.

`index_of(services)` is the one index of a process (SQLite under the data dir).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recordings.index.base import TranscriptIndex

if TYPE_CHECKING:
    from pipeline.services import Services

INDEX_FILE = "index.sqlite"


def index_of(services: Services) -> TranscriptIndex:
    """The process-wide transcript index, opened on first use."""

    def open_index() -> TranscriptIndex:
        from recordings.index.sqlite import SqliteIndex

        return SqliteIndex(services.settings.data_dir / INDEX_FILE)

    return services.component("index", open_index)
