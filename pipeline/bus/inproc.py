"""The embedded bus: partitioned in-memory logs with consumer groups, in one process.

It behaves as Kafka does where callpipe relies on it: keys pick partitions, one group
member owns a partition, offsets move on commit only, a member that joins or leaves
rebalances the group. Records every live group has committed are dropped to bound memory.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.bus.base import BusError, Message, RevokeCallback

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    base: int = 0  # offset of records[0]
    records: list[Message] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + len(self.records)


@dataclass
class _Group:
    topics: set[str] = field(default_factory=set)
    members: list[InProcessConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


class InProcessBus:
    """All topics of one embedded process."""

    def __init__(self, partitions: int = 6) -> None:
        self.partitions = partitions
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._cond = threading.Condition()
        self._closed = False

    # -- admin ------------------------------------------------------------------------
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics that do not exist yet."""
        with self._cond:
            for t in topics:
                self._topics.setdefault(t, [_Partition() for _ in range(self.partitions)])

    def producer(self) -> InProcessProducer:
        """A producer; sends are durable at once (there is nothing to flush to)."""
        return InProcessProducer(self)

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_revoked: RevokeCallback | None = None,
        from_beginning: bool = True,
    ) -> InProcessConsumer:
        """Join `group` on `topics`; partitions are shared among the group's members."""
        self.ensure_topics(topics)
        c = InProcessConsumer(self, list(topics), group, on_revoked, from_beginning)
        with self._cond:
            g = self._groups.setdefault(group, _Group())
            g.topics.update(topics)
            g.members.append(c)
            self._rebalance(g)
        return c

    def close(self) -> None:
        """Wake every waiting consumer so threads can exit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- internals (called with the lock held) -----------------------------------------
    def _partition_for(self, topic: str, key: str | None) -> int:
        if key is None:
            return 0
        return zlib.crc32(key.encode()) % self.partitions

    def _append(self, topic: str, key: str | None, value: bytes) -> None:
        with self._cond:
            if self._closed:
                raise BusError("bus is closed", retriable=False)
            parts = self._topics.setdefault(topic, [_Partition() for _ in range(self.partitions)])
            p = self._partition_for(topic, key)
            part = parts[p]
            part.records.append(Message(topic, p, part.end, key, value, time.time()))
            self._cond.notify_all()

    def _rebalance(self, g: _Group) -> None:
        g.generation += 1
        tps = sorted((t, p) for t in g.topics for p in range(len(self._topics[t])))
        live = [m for m in g.members if not m.closed]
        for m in live:
            m._pending_assignment = set()
        for i, tp in enumerate(tps):
            if live and tp[0] in live[i % len(live)].topics:
                live[i % len(live)]._pending_assignment.add(tp)
        self._cond.notify_all()

    def _leave(self, c: InProcessConsumer) -> None:
        with self._cond:
            g = self._groups.get(c.group)
            if g is None:
                return
            g.members = [m for m in g.members if m is not c]
            if g.members:
                self._rebalance(g)
            elif c.ephemeral:
                del self._groups[c.group]

    def _trim(self, topic: str) -> None:
        """Drop records every group reading `topic` has committed past."""
        groups = [g for g in self._groups.values() if topic in g.topics and g.members]
        if not groups:
            return
        for p, part in enumerate(self._topics[topic]):
            low = min(self._low_water(g, (topic, p), part.base) for g in groups)
            drop = low - part.base
            if drop > 0:
                del part.records[:drop]
                part.base = low

    @staticmethod
    def _low_water(g: _Group, tp: TopicPartition, base: int) -> int:
        """Oldest offset group `g` may still read on `tp`."""
        if tp in g.committed:
            return g.committed[tp]
        # A tailing (ephemeral) member never needs what lies behind its position, and it
        # may never commit: without this it would pin every record in memory.
        tails = [m._position[tp] for m in g.members if m.ephemeral and tp in m._position]
        return min(tails) if tails else base


class InProcessProducer:
    """Producer on the in-process bus."""

    def __init__(self, bus: InProcessBus) -> None:
        self._bus = bus

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        """Append to the key's partition."""
        self._bus._append(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        """Nothing buffered: in-process appends are immediate."""

    def close(self) -> None:
        """Nothing to release."""


class InProcessConsumer:
    """Group member on the in-process bus."""

    def __init__(
        self,
        bus: InProcessBus,
        topics: list[str],
        group: str,
        on_revoked: RevokeCallback | None,
        from_beginning: bool,
    ) -> None:
        self._bus = bus
        self.topics = topics
        self.group = group
        self.ephemeral = not from_beginning
        self._on_revoked = on_revoked
        self._from_beginning = from_beginning
        self._generation = -1
        self._pending_assignment: set[TopicPartition] = set()
        self._assigned: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}
        self.closed = False

    def assignment(self) -> set[TopicPartition]:
        """Partitions this member owns now."""
        return set(self._assigned)

    def _sync(self) -> None:
        g = self._bus._groups[self.group]
        if self._generation == g.generation:
            return
        new = set(self._pending_assignment)
        revoked = self._assigned - new
        self._generation = g.generation
        if revoked and self._on_revoked is not None:
            self._bus._cond.release()
            try:
                self._on_revoked(revoked)
            finally:
                self._bus._cond.acquire()
        self._assigned = new
        for tp in new:
            part = self._bus._topics[tp[0]][tp[1]]
            start = part.base if self._from_beginning else part.end
            self._position[tp] = max(g.committed.get(tp, start), part.base)
        for tp in revoked:
            self._position.pop(tp, None)

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Message]:
        """Records after this member's position, waiting up to `timeout_s` for some."""
        deadline = time.monotonic() + timeout_s
        with self._bus._cond:
            while True:
                if self.closed:
                    return []
                self._sync()
                out: list[Message] = []
                for tp in sorted(self._assigned):
                    part = self._bus._topics[tp[0]][tp[1]]
                    pos = self._position[tp]
                    take = part.records[pos - part.base : pos - part.base + max_records - len(out)]
                    out.extend(take)
                    self._position[tp] = pos + len(take)
                    if len(out) >= max_records:
                        break
                if out and self.ephemeral:
                    for t in {m.topic for m in out}:
                        self._bus._trim(t)
                if out or self._bus._closed:
                    return out
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._bus._cond.wait(left)

    def commit(self) -> None:
        """Commit positions of everything polled so far."""
        with self._bus._cond:
            g = self._bus._groups.get(self.group)
            if g is None or self.closed:
                return
            for tp in self._assigned:
                g.committed[tp] = self._position[tp]
            for t in {tp[0] for tp in self._assigned}:
                self._bus._trim(t)

    def close(self) -> None:
        """Leave the group (its partitions go to the other members)."""
        if not self.closed:
            self.closed = True
            self._bus._leave(self)
