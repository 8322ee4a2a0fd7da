"""Stages and the runner that drives them: consume, process, produce, flush, then commit.

A stage is a small object that takes typed events in and yields typed events out
(as pipecat's frame processors). The runner owns everything else: decoding, retries,
dead letters, metrics and offsets. What a stage cannot process goes to the dead-letter
topic with the reason, its offset is committed, and the next message is processed.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterable, Sequence

from pipeline.bus.base import Bus, BusError, Consumer, Message, Producer
from pipeline.events import (
    DeadLetter,
    Event,
    EventError,
    MediaChunk,
    decode_event,
    decode_media,
)
from pipeline.logs import ctx
from pipeline.metrics import Metrics
from pipeline.topics import Topics

log = logging.getLogger(__name__)

Output = Event | MediaChunk
MAX_DEADLETTER_PAYLOAD = 64 * 1024


class ProcessingError(Exception):
    """A stage could not process a message; `retriable` decides retry or dead-letter."""

    retriable = True

    def __init__(self, reason: str, *, retriable: bool | None = None) -> None:
        super().__init__(reason)
        if retriable is not None:
            self.retriable = retriable


class BadInput(ProcessingError):
    """The message itself is wrong (missing object, corrupt audio): never retried."""

    retriable = False


class Stage:
    """Base of every pipeline stage; override `process`, and `tick`/`revoked` if stateful."""

    #: consumer group of this stage's workers (under the deployment's topic prefix)
    name: str = "stage"
    #: short topic names consumed (`media`, `transcripts`, ...)
    topics: Sequence[str] = ()
    #: the longest wait for messages before `tick` runs again (None: the runner's)
    poll_timeout_s: float | None = None

    def process(self, event: Event | MediaChunk) -> Iterable[Output]:
        """Handle one event; yield what it produces."""
        return ()

    def tick(self, now: float) -> Iterable[Output]:
        """Called between polls: timers, timeouts, absences."""
        return ()

    def failed(self, event: Event | MediaChunk, reason: str) -> None:
        """The event was dead-lettered with `reason`: record it where its sender looks (a
        job's status). Must not raise."""

    def revoked(self, partitions: set[tuple[str, int]]) -> Iterable[Output]:
        """Partitions moved to another worker: flush or drop per-call state for them."""
        return ()

    def close(self) -> Iterable[Output]:
        """The worker stops: flush what can be flushed."""
        return ()


class WorkerRunner:
    """Runs one stage as one member of its consumer group."""

    def __init__(
        self,
        stage: Stage,
        bus: Bus,
        topics: Topics,
        metrics: Metrics,
        *,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        poll_timeout_s: float = 0.2,
        max_records: int = 200,
    ) -> None:
        self.stage = stage
        self.topics = topics
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.poll_timeout_s = min(poll_timeout_s, stage.poll_timeout_s or poll_timeout_s)
        self.max_records = max_records
        self._media_topic = topics.media
        self._bus = bus
        self._producer: Producer = bus.producer()
        self._revoked_outputs: list[Output] = []
        self._full_topics = [topics.name(t) for t in stage.topics]
        bus.ensure_topics([*self._full_topics, topics.deadletter, *topics.all()])
        self._consumer: Consumer = self._join()

    def _join(self) -> Consumer:
        # The group is named under the deployment's prefix, as its topics are: deployments
        # sharing a Kafka cluster never share a group (a member subscribed to another
        # deployment's topics would hold a rebalance up).
        group = self.topics.name(self.stage.name)
        return self._bus.consumer(self._full_topics, group, on_revoked=self._on_revoked)

    def _on_revoked(self, partitions: set[tuple[str, int]]) -> None:
        try:
            self._revoked_outputs.extend(self.stage.revoked(partitions))
        except Exception:  # called inside poll: a stage bug must not break the consumer
            log.exception("stage %s failed on revoked partitions", self.stage.name)

    def _decode(self, msg: Message) -> Event | MediaChunk:
        if msg.topic == self._media_topic:
            return decode_media(msg.value)
        return decode_event(msg.value)

    def _dead_letter(self, msg: Message, reason: str, tenant: str | None) -> None:
        if len(msg.value) <= MAX_DEADLETTER_PAYLOAD:
            try:
                payload = msg.value.decode()
            except UnicodeDecodeError:
                payload = "base64:" + base64.b64encode(msg.value).decode()
            ref = None
        else:
            payload = None
            ref = f"{msg.topic}/{msg.partition}/{msg.offset}"
        dl = DeadLetter(
            tenant=tenant,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            reason=reason,
            worker=self.stage.name,
            payload=payload,
            payload_ref=ref,
        )
        self._producer.send(self.topics.deadletter, msg.key, dl.encode())
        self.metrics.inc("deadletters_total", worker=self.stage.name, topic=msg.topic)
        log.warning(
            "dead-lettered %s/%d@%d: %s",
            msg.topic,
            msg.partition,
            msg.offset,
            reason,
            **ctx(tenant, msg.key),
        )

    def _handle(self, msg: Message) -> list[Output]:
        try:
            event = self._decode(msg)
        except EventError as exc:
            self._dead_letter(msg, f"malformed event: {exc}", None)
            return []
        tenant = event.tenant
        for attempt in range(1, self.max_attempts + 1):
            try:
                return list(self.stage.process(event))
            except ProcessingError as exc:
                if not exc.retriable or attempt == self.max_attempts:
                    self._give_up(msg, event, str(exc))
                    return []
                self.metrics.inc("retries_total", worker=self.stage.name)
            except Exception as exc:  # a bug must not stop other calls' messages
                log.exception("stage %s failed", self.stage.name, **ctx(tenant, msg.key))
                if attempt == self.max_attempts:
                    self._give_up(msg, event, f"{type(exc).__name__}: {exc}")
                    return []
                self.metrics.inc("retries_total", worker=self.stage.name)
            time.sleep(self.retry_backoff_s * attempt)
        return []

    def _give_up(self, msg: Message, event: Event | MediaChunk, reason: str) -> None:
        """Dead-letter the message and let the stage tell its sender."""
        self._dead_letter(msg, reason, event.tenant)
        try:
            self.stage.failed(event, reason)
        except Exception:  # telling is best effort; the dead letter holds the reason
            log.exception("stage %s failed to record a failure", self.stage.name)

    def _publish(self, outputs: Iterable[Output]) -> None:
        for out in outputs:
            self._producer.send(self.topics.for_event(out), out.key, out.encode())
            self.metrics.inc("events_out_total", worker=self.stage.name, type=out.type)

    def run_once(self) -> int:
        """One poll-process-produce-commit round; returns how many messages it handled."""
        msgs = self._consumer.poll(self.poll_timeout_s, self.max_records)
        outputs: list[Output] = []
        if self._revoked_outputs:
            outputs.extend(self._revoked_outputs)
            self._revoked_outputs.clear()
        for msg in msgs:
            self.metrics.inc("events_in_total", worker=self.stage.name, topic=msg.topic)
            began = time.perf_counter()
            outputs.extend(self._handle(msg))
            self.metrics.observe(
                "stage_process_seconds", time.perf_counter() - began, worker=self.stage.name
            )
        try:
            outputs.extend(self.stage.tick(time.time()))
        except Exception:  # a timer bug must not stop the worker
            log.exception("stage %s failed in tick", self.stage.name)
            self.metrics.inc("tick_errors_total", worker=self.stage.name)
        self._publish(outputs)
        if msgs or outputs:
            self._flush_and_commit(bool(msgs))
        return len(msgs)

    def _flush_and_commit(self, commit: bool) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._producer.flush(30.0)
                break
            except BusError as exc:
                if not exc.retriable or attempt == self.max_attempts:
                    raise
                time.sleep(self.retry_backoff_s * attempt)
        if commit:
            self._consumer.commit()

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set, then flush the stage and leave the group."""
        try:
            while not stop.is_set():
                try:
                    self.run_once()
                except BusError as exc:
                    self._recover(exc, stop)
        finally:
            try:
                self._publish(self.stage.close())
                self._producer.flush(10.0)
            finally:
                self._consumer.close()
                self._producer.close()

    def _recover(self, exc: BusError, stop: threading.Event) -> None:
        """Outputs were not flushed or the commit was refused: rejoin from the last commit.

        The consumer's position already moved past the round's messages, so only a new
        member (resuming at the committed offsets) replays them: at-least-once holds.
        """
        log.warning("worker %s: bus error, rejoining its group: %s", self.stage.name, exc)
        self.metrics.inc("bus_errors_total", worker=self.stage.name)
        owned = self._consumer.assignment()
        try:
            self._consumer.close()
        except Exception:  # the old member is abandoned either way
            log.exception("closing the consumer of %s failed", self.stage.name)
        if owned:
            self._on_revoked(owned)
        while not stop.wait(self.retry_backoff_s * self.max_attempts):
            try:
                self._consumer = self._join()
                return
            except BusError as again:
                log.warning("worker %s: rejoining failed: %s", self.stage.name, again)

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread."""
        t = threading.Thread(
            target=self.run, args=(stop,), name=f"worker-{self.stage.name}", daemon=True
        )
        t.start()
        return t
