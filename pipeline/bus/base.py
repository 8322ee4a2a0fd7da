"""The bus interface both implementations honour.

Delivery is at-least-once: a consumer's offsets move only when `commit()` is called,
and a consumer group shares partitions so that one member owns a key's messages in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class BusError(RuntimeError):
    """The bus could not deliver or receive; `retriable` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True)
class Message:
    """One record as read from a topic partition."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp: float = 0.0


RevokeCallback = Callable[[set[tuple[str, int]]], None]


class Producer(Protocol):
    """Sends records; `flush` returns once every record sent so far is durable."""

    def send(self, topic: str, key: str | None, value: bytes) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None: ...

    def close(self) -> None: ...


class Consumer(Protocol):
    """A member of a consumer group."""

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Message]: ...

    def commit(self) -> None:
        """Commit the position after every message returned by `poll` so far."""
        ...

    def assignment(self) -> set[tuple[str, int]]: ...

    def close(self) -> None: ...


class Bus(Protocol):
    """Creates producers and group consumers on one cluster (or in-process log)."""

    def ensure_topics(self, topics: Sequence[str]) -> None: ...

    def producer(self) -> Producer: ...

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_revoked: RevokeCallback | None = None,
        from_beginning: bool = True,
    ) -> Consumer: ...

    def close(self) -> None: ...
