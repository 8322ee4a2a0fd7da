"""KafkaBus against a real Kafka-protocol broker (tansu): keys, groups, commits, topics.

Group joins cost about a second each on tansu, so one scenario test walks through
round trip, partition sharing, rebalance redelivery and close-without-commit.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer

from pipeline.bus.base import BusError, Message
from pipeline.bus.kafka import KafkaBus, KafkaBusConsumer
from pipeline.config import KafkaSettings, Settings
from pipeline.services import Services
from pipeline.topics import Topics
from recordings.store.minio import MinioStore


@pytest.fixture
def fast_settings(distributed_settings: Settings) -> Settings:
    """Shorter sessions: tansu holds a join for about half the session timeout."""
    distributed_settings.kafka.session_timeout_ms = 2000
    distributed_settings.kafka.heartbeat_interval_ms = 300
    return distributed_settings


@pytest.fixture
def bus(fast_settings: Settings) -> Iterator[KafkaBus]:
    b = KafkaBus(fast_settings.kafka)
    yield b
    b.close()


def _poll_until(
    consumers: list[KafkaBusConsumer], done: object, timeout_s: float = 30.0
) -> list[list[Message]]:
    """Poll every consumer in turn until `done(got)` holds; returns what each received."""
    got: list[list[Message]] = [[] for _ in consumers]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            got[i] += c.poll(0.1)
        if done(got):  # type: ignore[operator]
            return got
    raise AssertionError(f"condition not met in {timeout_s}s; got {[len(g) for g in got]}")


def _values(msgs: list[Message]) -> list[bytes]:
    return sorted(m.value for m in msgs)


def test_kafka_group_scenario(bus: KafkaBus, fast_settings: Settings) -> None:
    topic = Topics(fast_settings.topic_prefix).name("scenario")
    bus.ensure_topics([topic])
    producer = bus.producer()
    all_parts = {(topic, p) for p in range(3)}

    def send(batch: str, n: int) -> list[bytes]:
        values = [f"{batch}:{i % 12}:{i}".encode() for i in range(n)]
        for v in values:
            producer.send(topic, f"call-{v.decode().split(':')[1]}", v)
        producer.flush(10)
        return sorted(values)

    # 1. round trip with keys: a key stays on one partition, in order
    first = send("a", 30)
    revoked: list[set[tuple[str, int]]] = []
    c1 = bus.consumer([topic], "grp", on_revoked=revoked.append)
    (got1,) = _poll_until([c1], lambda g: len(g[0]) >= 30)
    assert _values(got1) == first
    by_key: dict[str, list[Message]] = {}
    for m in got1:
        assert m.topic == topic and m.timestamp > 0 and isinstance(m.value, bytes)
        by_key.setdefault(str(m.key), []).append(m)
    assert len(by_key) == 12
    for key, msgs in by_key.items():
        assert len({m.partition for m in msgs}) == 1, key
        seq = [int(m.value.split(b":")[2]) for m in msgs]
        assert seq == sorted(seq), key
    assert {msgs[0].partition for msgs in by_key.values()} == {0, 1, 2}  # keys spread
    assert c1.assignment() == all_parts
    c1.commit()

    # 2. polled but not committed, then a second member joins: the group splits the
    #    partitions and the uncommitted records are delivered again, the committed not
    second = send("b", 12)
    (got,) = _poll_until([c1], lambda g: len(g[0]) >= 12)
    assert _values(got) == second
    c2 = bus.consumer([topic], "grp")

    def split(g: list[list[Message]]) -> bool:
        a1, a2 = c1.assignment(), c2.assignment()
        return bool(a1 and a2) and a1 | a2 == all_parts and len(g[0]) + len(g[1]) >= 12

    r1, r2 = _poll_until([c1, c2], split)
    assert not c1.assignment() & c2.assignment()
    assert _values(r1 + r2) == second  # redelivered exactly once, nothing from batch "a"
    assert {(m.topic, m.partition) for m in r1} <= c1.assignment()
    assert {(m.topic, m.partition) for m in r2} <= c2.assignment()
    assert revoked and revoked[0] == all_parts  # c1 gave its partitions back to rebalance
    c1.commit()
    c2.commit()

    # 3. c1 reads its share of a new batch and dies without committing: after the
    #    rebalance c2 owns everything and receives exactly c1's uncommitted share
    third = send("c", 18)
    s1, s2 = _poll_until([c1, c2], lambda g: len(g[0]) + len(g[1]) >= 18)
    assert _values(s1 + s2) == third and s1
    c2.commit()
    c1.close()
    assert c1.poll(0.1) == [] and c1.assignment() == set()
    (again,) = _poll_until([c2], lambda g: c2.assignment() == all_parts and len(g[0]) >= len(s1))
    assert _values(again) == _values(s1)

    # 4. a member of a new group starting after commits: a group of its own reads all,
    #    while "grp" (everything committed) has nothing left
    c2.commit()
    c2.close()
    c3 = bus.consumer([topic], "grp")
    fresh = bus.consumer([topic], "other-grp")
    left, everything = _poll_until(
        [c3, fresh], lambda g: len(g[1]) >= 60 and c3.assignment() == all_parts
    )
    assert left == [] and _values(everything) == sorted(first + second + third)
    assert c3.poll(0.3) == []
    c3.close()
    fresh.close()
    producer.close()


def test_ensure_topics_creates_partitions_once(bus: KafkaBus, fast_settings: Settings) -> None:
    topics = [Topics(fast_settings.topic_prefix).name(s) for s in ("x", "y")]
    bus.ensure_topics(topics)
    bus.ensure_topics(topics)  # cached
    KafkaBus(fast_settings.kafka).ensure_topics(topics)  # another process: already exists
    probe = KafkaConsumer(bootstrap_servers=fast_settings.kafka.bootstrap)
    try:
        for t in topics:
            assert probe.partitions_for_topic(t) == {0, 1, 2}
    finally:
        probe.close()


def test_unreachable_broker_is_a_retriable_bus_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    dead = KafkaBus(KafkaSettings(bootstrap=f"127.0.0.1:{port}"))
    with pytest.raises(BusError) as err:
        dead.ensure_topics(["nowhere"])
    assert err.value.retriable
    dead.close()


def test_build_services_distributed(distributed_services: Services) -> None:
    svc = distributed_services
    assert isinstance(svc.bus, KafkaBus) and isinstance(svc.store, MinioStore)
    assert svc.store.bucket == svc.settings.s3.bucket
    uri = svc.store.put("acme/2026/01/01/c1/x.txt", b"hello", "text/plain")
    assert uri == f"s3://{svc.settings.s3.bucket}/acme/2026/01/01/c1/x.txt"
    assert svc.store.get(svc.store.key_from_uri(uri)) == b"hello"
    probe = KafkaConsumer(bootstrap_servers=svc.settings.kafka.bootstrap)
    try:
        for t in svc.topics.all():
            assert probe.partitions_for_topic(t) == set(range(svc.settings.kafka.partitions))
    finally:
        probe.close()
