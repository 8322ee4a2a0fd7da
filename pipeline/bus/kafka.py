"""The distributed bus: Kafka (any Kafka-protocol broker) through kafka-python.

Producers wait for every in-sync replica (acks=all) and `flush` reports a failed record
as a BusError; consumers never auto-commit: `commit` stores the position after the last
record `poll` returned, so a record is redelivered unless its processing was committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from pipeline.bus.base import BusError, Message, RevokeCallback
from pipeline.config import KafkaSettings

log = logging.getLogger(__name__)

TopicPart = tuple[str, int]
_PRUNE_AT = 1000


def _bus_error(what: str, exc: BaseException) -> BusError:
    """A BusError carrying kafka-python's own verdict on whether a retry may help."""
    retriable = bool(getattr(exc, "retriable", False)) or isinstance(exc, KafkaTimeoutError)
    err = BusError(f"{what}: {type(exc).__name__}: {exc}", retriable=retriable)
    err.__cause__ = exc
    return err


class KafkaBus:
    """Producers, group consumers and topic creation on one Kafka cluster."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._admin: KafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._clients: list[KafkaBusProducer | KafkaBusConsumer] = []
        self._closed = False

    def _common(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap_servers": s.bootstrap.split(","),
            "client_id": s.client_id,
            "metadata_max_age_ms": s.metadata_max_age_ms,
        }

    # -- admin ------------------------------------------------------------------------
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with `settings.partitions` partitions; existing ones are kept."""
        with self._lock:
            wanted = [t for t in dict.fromkeys(topics) if t not in self._known_topics]
            if not wanted:
                return
            try:
                if self._admin is None:
                    self._admin = KafkaAdminClient(**self._common())
                created = []
                # One request per topic: kafka-python raises on the first per-topic error,
                # and its list_topics() cannot parse every broker's reply (tansu's ACL bits).
                for topic in wanted:
                    s = self.settings
                    new = NewTopic(topic, s.partitions, s.replication_factor)
                    try:
                        self._admin.create_topics([new])
                        created.append(topic)
                    except TopicAlreadyExistsError:
                        pass
            except KafkaError as exc:
                raise _bus_error("creating topics failed", exc) from exc
            self._known_topics.update(wanted)
            if created:
                log.info("created topics %s", ", ".join(created))

    def producer(self) -> KafkaBusProducer:
        """A producer; records of one key go to one partition (murmur2 of the key)."""
        try:
            p = KafkaBusProducer(self.settings, self._common())
        except KafkaError as exc:
            raise _bus_error("connecting a producer failed", exc) from exc
        self._track(p)
        return p

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_revoked: RevokeCallback | None = None,
        from_beginning: bool = True,
    ) -> KafkaBusConsumer:
        """Join `group` on `topics`; a group without committed offsets starts at the
        beginning, or at the end (only new records) when `from_beginning` is False."""
        try:
            c = KafkaBusConsumer(
                self.settings, self._common(), list(topics), group, on_revoked, from_beginning
            )
        except KafkaError as exc:
            raise _bus_error(f"joining group {group!r} failed", exc) from exc
        self._track(c)
        return c

    def _track(self, client: KafkaBusProducer | KafkaBusConsumer) -> None:
        with self._lock:
            self._clients = [c for c in self._clients if not c.closed]
            self._clients.append(client)

    def close(self) -> None:
        """Close the admin client and every producer and consumer still open."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
            admin, self._admin = self._admin, None
        for c in clients:
            try:
                c.close()
            except Exception:  # closing must go on for the others
                log.exception("closing %r failed", c)
        if admin is not None:
            admin.close()


class KafkaBusProducer:
    """A kafka-python producer whose `flush` raises if any record since the last one failed."""

    def __init__(self, settings: KafkaSettings, common: dict[str, Any]) -> None:
        self._producer = KafkaProducer(
            **common,
            acks="all",
            linger_ms=settings.linger_ms,
            retries=5,
            # ordering per key must survive retries
            max_in_flight_requests_per_connection=1,
        )
        self._lock = threading.Lock()
        self._pending: list[FutureRecordMetadata] = []
        self.closed = False

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        """Queue a record; a failure shows at the next `flush`."""
        try:
            fut = self._producer.send(topic, value=value, key=None if key is None else key.encode())
        except KafkaError as exc:
            raise _bus_error(f"sending to {topic} failed", exc) from exc
        with self._lock:
            self._pending.append(fut)
            if len(self._pending) > _PRUNE_AT:
                # a producer that rarely flushes must not hoard acknowledged futures;
                # failed ones stay to be reported by the next flush
                self._pending = [f for f in self._pending if not f.is_done or f.failed()]

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued record is acknowledged by all in-sync replicas."""
        with self._lock:
            pending, self._pending = self._pending, []
        try:
            self._producer.flush(None if timeout_s is None else timeout_s)
        except KafkaError as exc:
            with self._lock:
                self._pending[:0] = pending  # nothing is known durable yet
            raise _bus_error("flush failed", exc) from exc
        for fut in pending:
            if fut.failed():
                # kafka-python already retried it; flushing again cannot bring it back,
                # only replaying the input (from the last commit) can.
                raise BusError(
                    f"a record was not stored: {fut.exception!r}", retriable=False
                ) from fut.exception

    def close(self) -> None:
        """Send what is queued (bounded wait), then release the connection."""
        if not self.closed:
            self.closed = True
            self._producer.close(timeout=10)


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaBusConsumer) -> None:
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._consumer._revoked({(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class KafkaBusConsumer:
    """One member of a Kafka consumer group, committing only what `poll` returned."""

    def __init__(
        self,
        settings: KafkaSettings,
        common: dict[str, Any],
        topics: list[str],
        group: str,
        on_revoked: RevokeCallback | None,
        from_beginning: bool,
    ) -> None:
        self.topics = topics
        self.group = group
        self._on_revoked = on_revoked
        self._consumer = KafkaConsumer(
            **common,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            # kafka-python insists on a request timeout above the poll interval
            request_timeout_ms=settings.max_poll_interval_ms + 5_000,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        self._consumer.subscribe(topics, listener=_Revocations(self))
        # Callers may close from another thread (shutdown); kafka-python is not thread-safe.
        self._lock = threading.RLock()
        self._positions: dict[TopicPart, int] = {}
        self.closed = False

    def _revoked(self, partitions: set[TopicPart]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)  # the next owner resumes from the last commit
        if partitions and self._on_revoked is not None:
            self._on_revoked(partitions)

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Message]:
        """Records after this member's position, waiting up to `timeout_s` for some."""
        if self.closed:
            time.sleep(timeout_s)  # a loop still polling a closed member must not spin
            return []
        with self._lock:
            if self.closed:
                return []
            try:
                batches = self._consumer.poll(
                    timeout_ms=int(timeout_s * 1000), max_records=max_records
                )
            except KafkaError as exc:
                raise _bus_error("poll failed", exc) from exc
            out: list[Message] = []
            for tp, records in sorted(batches.items(), key=lambda kv: tuple(kv[0])):
                for r in records:
                    out.append(
                        Message(
                            topic=r.topic,
                            partition=r.partition,
                            offset=r.offset,
                            key=None if r.key is None else r.key.decode(errors="replace"),
                            value=r.value if r.value is not None else b"",
                            timestamp=max(r.timestamp or 0, 0) / 1000.0,
                        )
                    )
                if records:
                    self._positions[(tp.topic, tp.partition)] = records[-1].offset + 1
            return out

    def commit(self) -> None:
        """Commit the position after every record `poll` returned on partitions still owned."""
        with self._lock:
            if self.closed or not self._positions:
                return
            owned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
            offsets = {
                TopicPartition(t, p): OffsetAndMetadata(pos, "", -1)
                for (t, p), pos in self._positions.items()
                if (t, p) in owned
            }
            if not offsets:
                return
            try:
                self._consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group rebalanced: the new owner replays from the last commit.
                self._positions.clear()
                raise BusError(f"commit refused after a rebalance: {exc}", retriable=False) from exc
            except KafkaError as exc:
                raise _bus_error("commit failed", exc) from exc
            self._positions.clear()

    def assignment(self) -> set[TopicPart]:
        """Partitions this member owns now."""
        with self._lock:
            if self.closed:
                return set()
            return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def close(self) -> None:
        """Leave the group without committing; uncommitted records go to the next owner."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._consumer.close(autocommit=False)
            except KafkaError as exc:
                log.warning("closing consumer of group %s failed: %s", self.group, exc)
