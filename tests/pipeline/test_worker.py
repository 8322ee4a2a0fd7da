"""WorkerRunner on both buses: outputs, dead letters with reasons, isolation of failures,
flush-before-commit and redelivery after a crash; recovery from a failed flush."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.bus.base import Bus, BusError, Consumer, Message
from pipeline.bus.inproc import InProcessBus
from pipeline.bus.kafka import KafkaBus
from pipeline.config import Settings
from pipeline.events import CallStarted, DeadLetter, Event, Hint, MediaChunk
from pipeline.metrics import Metrics
from pipeline.topics import Topics
from pipeline.worker import BadInput, Output, Stage, WorkerRunner

KEY = "call-key"  # one key: every input lands on one partition, in order


class EchoStage(Stage):
    """One hint per call.started; `caller` chooses how processing fails."""

    topics = ("calls",)

    def __init__(self) -> None:
        self.name = f"echo-{uuid.uuid4().hex[:6]}"
        self.seen: list[str] = []

    def process(self, event: Event | MediaChunk) -> Iterable[Output]:
        assert isinstance(event, CallStarted)
        self.seen.append(event.call_id)
        if event.caller == "bad":
            raise BadInput("caller is not a phone number")
        if event.caller == "boom":
            raise RuntimeError("stage bug")
        yield Hint(
            tenant=event.tenant,
            call_id=event.call_id,
            hint_id=f"{event.call_id}-greet",
            kind="script",
            title="greet",
            text=f"say hello to {event.caller}",
        )


class Env:
    """One bus (in-process or Kafka on tansu) under a fresh topic prefix."""

    def __init__(self, kind: str, bus: Bus, topics: Topics, settings: Settings | None) -> None:
        self.kind = kind
        self.bus = bus
        self.topics = topics
        self.settings = settings

    def send(self, items: list[bytes]) -> None:
        self.bus.ensure_topics(self.topics.all())
        p = self.bus.producer()
        for v in items:
            p.send(self.topics.calls, KEY, v)
        p.flush(10)
        p.close()

    def committed(self, group: str) -> dict[int, int]:
        """Committed offset per partition of the calls topic, read without joining."""
        if isinstance(self.bus, InProcessBus):
            g = self.bus._groups.get(group)
            items = g.committed.items() if g else []
            return {p: o for (t, p), o in items if t == self.topics.calls}
        assert self.settings is not None
        probe = KafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            group_id=group,
            enable_auto_commit=False,
        )
        try:
            out = {}
            for p in range(self.settings.kafka.partitions):
                off = probe.committed(TopicPartition(self.topics.calls, p))
                if off is not None:
                    out[p] = off
            return out
        finally:
            probe.close()


@pytest.fixture(params=["inproc", "kafka"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    if request.param == "inproc":
        bus: Bus = InProcessBus(partitions=3)
        yield Env("inproc", bus, Topics(f"w{uuid.uuid4().hex[:6]}."), None)
    else:
        settings: Settings = request.getfixturevalue("distributed_settings")
        settings.kafka.session_timeout_ms = 2000  # tansu holds joins for half of it
        settings.kafka.heartbeat_interval_ms = 300
        bus = KafkaBus(settings.kafka)
        yield Env("kafka", bus, Topics(settings.topic_prefix), settings)
    bus.close()


def _call(call_id: str, caller: str) -> bytes:
    return CallStarted(tenant="acme", call_id=call_id, caller=caller).encode()


def _runner(env: Env, stage: Stage, metrics: Metrics) -> WorkerRunner:
    return WorkerRunner(
        stage, env.bus, env.topics, metrics, retry_backoff_s=0.01, poll_timeout_s=0.1
    )


def _run_until(runner: WorkerRunner, metrics: Metrics, n_in: float, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while metrics.total("events_in_total") < n_in:
        assert time.monotonic() < deadline, "the runner did not get its messages in time"
        runner.run_once()


def _read(env: Env, topics: list[str], want: int, timeout_s: float = 30) -> list[Message]:
    c = env.bus.consumer(topics, f"reader-{uuid.uuid4().hex[:6]}")
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += c.poll(0.1)
    got += c.poll(0.3)  # and nothing more than expected
    c.close()
    return got


def test_outputs_dead_letters_and_isolation(env: Env) -> None:
    sent = [
        _call("c1", "alice"),
        b"{not json",
        _call("c3", "bad"),
        _call("c4", "boom"),
        _call("c5", "bob"),
    ]
    env.send(sent)
    stage, metrics = EchoStage(), Metrics()
    runner = _runner(env, stage, metrics)
    _run_until(runner, metrics, 5)
    # every message was handled, in order, the failing one three times (retries)
    assert stage.seen == ["c1", "c3", "c4", "c4", "c4", "c5"]
    assert metrics.total("retries_total") == 2
    assert metrics.value("deadletters_total", worker=stage.name, topic=env.topics.calls) == 3
    # and its offsets are committed past the last one
    group = env.topics.name(stage.name)
    committed = {p: o for p, o in env.committed(group).items() if o}  # skip empty ones
    assert list(committed.values()) == [5]
    (partition,) = committed

    t = env.topics
    msgs = _read(env, [t.hints, t.deadletter], 2 + 3)
    hints = [Hint.model_validate_json(m.value) for m in msgs if m.topic == t.hints]
    dls = [DeadLetter.model_validate_json(m.value) for m in msgs if m.topic == t.deadletter]
    assert sorted(h.call_id for h in hints) == ["c1", "c5"]
    assert {h.text for h in hints} == {"say hello to alice", "say hello to bob"}
    assert len(dls) == 3 and all(d.worker == stage.name and d.key == KEY for d in dls)
    by_offset = {d.offset: d for d in dls}
    assert sorted(by_offset) == [1, 2, 3]
    for d in dls:
        assert d.topic == t.calls and d.partition == partition
        assert d.payload == sent[d.offset].decode()
    assert by_offset[1].reason.startswith("malformed event: not JSON")
    assert by_offset[1].tenant is None
    assert by_offset[2].reason == "caller is not a phone number" and by_offset[2].tenant == "acme"
    assert by_offset[3].reason == "RuntimeError: stage bug"
    stop = threading.Event()
    stop.set()
    runner.run(stop)  # closes cleanly: leaves the group


class CrashBeforeCommit:
    """Wraps the runner's consumer: at commit time, note what the outputs topic holds,
    then die as a killed process would (leave the group without committing)."""

    def __init__(self, inner: Consumer, check: Any, calls: list[str]) -> None:
        self.inner = inner
        self.check = check
        self.calls = calls
        self.seen_at_commit: list[Message] = []

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Message]:
        return self.inner.poll(timeout_s, max_records)

    def commit(self) -> None:
        self.calls.append("commit")
        self.seen_at_commit = self.check()
        self.inner.close()
        raise SystemExit("worker killed before commit")

    def assignment(self) -> set[tuple[str, int]]:
        return self.inner.assignment()

    def close(self) -> None:
        self.inner.close()


def test_flush_before_commit_and_redelivery_after_crash(env: Env) -> None:
    t = env.topics
    env.send([_call("c1", "alice"), _call("c2", "bob")])
    stage, metrics = EchoStage(), Metrics()
    runner = _runner(env, stage, metrics)
    _run_until(runner, metrics, 2)
    assert stage.seen == ["c1", "c2"]

    reader = env.bus.consumer([t.hints], f"reader-{uuid.uuid4().hex[:6]}")
    hints: list[Message] = []

    def hints_now(want: int = 4) -> list[Message]:
        deadline = time.monotonic() + 10
        while len(hints) < want and time.monotonic() < deadline:
            hints.extend(reader.poll(0.1))
        return list(hints)

    env.send([_call("c3", "carol"), _call("c4", "dave")])
    calls: list[str] = []
    crash = CrashBeforeCommit(runner._consumer, hints_now, calls)
    runner._consumer = crash
    runner._producer = SpyProducer(runner._producer, calls)
    with pytest.raises(SystemExit):
        _run_until(runner, metrics, 4)
    # every output was sent, then flushed, then (and only then) the commit came
    assert calls[-1] == "commit" and calls.count("send") == 2
    assert calls.index("flushed") > max(i for i, c in enumerate(calls) if c == "send")
    # the outputs of c3/c4 were durable on the bus before the commit was attempted
    at_commit = sorted(Hint.model_validate_json(m.value).call_id for m in crash.seen_at_commit)
    assert at_commit == ["c1", "c2", "c3", "c4"]

    # a new member of the group gets c3 and c4 again (not c1, c2: those were committed)
    stage2, metrics2 = EchoStage(), Metrics()
    stage2.name = stage.name
    runner2 = _runner(env, stage2, metrics2)
    _run_until(runner2, metrics2, 2)
    runner2.run_once()
    assert stage2.seen == ["c3", "c4"]
    more = [Hint.model_validate_json(m.value) for m in hints_now(6) + reader.poll(0.3)]
    # replayed outputs carry the same ids, so consumers overwrite instead of duplicating
    assert sorted(h.hint_id for h in more) == sorted(
        ["c1-greet", "c2-greet", "c3-greet", "c3-greet", "c4-greet", "c4-greet"]
    )
    reader.close()
    stop = threading.Event()
    stop.set()
    runner2.run(stop)


class SpyProducer:
    """A real producer that notes the order of sends and flushes."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self.inner = inner
        self.calls = calls

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        self.calls.append("send")
        self.inner.send(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        self.inner.flush(timeout_s)
        self.calls.append("flushed")

    def close(self) -> None:
        self.inner.close()


class FlakyProducer:
    """A real in-process producer whose first flush fails as a lost Kafka record would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failures = 1

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        self.inner.send(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise BusError("a record was not stored", retriable=False)

    def close(self) -> None:
        self.inner.close()


class TickBug(EchoStage):
    def tick(self, now: float) -> Iterable[Output]:
        raise ZeroDivisionError("timer bug")


def test_run_survives_a_failed_flush_and_a_tick_bug() -> None:
    bus = InProcessBus(partitions=3)
    env = Env("inproc", bus, Topics(f"w{uuid.uuid4().hex[:6]}."), None)
    env.send([_call("c1", "alice")])
    stage, metrics = TickBug(), Metrics()
    runner = _runner(env, stage, metrics)
    runner._producer = FlakyProducer(runner._producer)
    stop = threading.Event()
    thread = runner.start(stop)
    deadline = time.monotonic() + 10
    group, partition = env.topics.name(stage.name), bus._partition_for(env.topics.calls, KEY)
    while env.committed(group).get(partition) != 1:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    # the round whose flush failed was not committed: the message was processed again
    assert stage.seen == ["c1", "c1"]
    assert metrics.total("bus_errors_total") == 1 and metrics.total("tick_errors_total") >= 2
    assert thread.is_alive()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
