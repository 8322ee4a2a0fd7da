"""The interface both object stores honour."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class StoreError(RuntimeError):
    """The store failed; `retriable` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class ObjectNotFound(StoreError):
    """No object under that key (or URI)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at {key!r}", retriable=False)
        self.key = key


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size: int
    last_modified: datetime


class ObjectStore(Protocol):
    """Keys look like `{tenant}/{yyyy}/{mm}/{dd}/{call_id}/{name}` (see pipeline.ids)."""

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store bytes; returns the object's URI."""
        ...

    def get(self, key: str) -> bytes:
        """Read a whole object; raises ObjectNotFound."""
        ...

    def get_range(self, key: str, start: int, length: int | None = None) -> bytes:
        """Read part of an object; raises ObjectNotFound."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size and time of an object; raises ObjectNotFound."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove an object; absent objects are not an error."""
        ...

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove objects in bulk (absent ones are not an error); returns how many."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, recursively."""
        ...

    def uri(self, key: str) -> str:
        """`s3://bucket/key` or `file:///abs/path`."""
        ...

    def key_from_uri(self, uri: str) -> str:
        """The key of one of this store's URIs; raises ObjectNotFound for a foreign URI."""
        ...

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A time-limited URL a browser can fetch, where the store has them."""
        ...
