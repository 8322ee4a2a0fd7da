"""The in-process bus keeps the Kafka semantics callpipe relies on: key order, group
sharing and rebalancing, commit-only offsets, tailing consumers, bounded memory."""

from __future__ import annotations

import threading
import time

from pipeline.bus.base import Message
from pipeline.bus.inproc import InProcessBus, InProcessConsumer

TOPIC = "t.calls"


def _drain(c: InProcessConsumer, want: int, timeout_s: float = 2.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += c.poll(0.05)
    return got


def _send(bus: InProcessBus, items: list[tuple[str, str]]) -> None:
    p = bus.producer()
    for key, value in items:
        p.send(TOPIC, key, value.encode())
    p.flush()


def test_key_keeps_one_partition_and_its_order() -> None:
    bus = InProcessBus(partitions=4)
    items = [(f"call-{k}", f"{k}:{i}") for i in range(5) for k in range(12)]
    _send(bus, items)
    got = _drain(bus.consumer([TOPIC], "g"), len(items))
    assert len(got) == len(items)
    parts: dict[str, set[int]] = {}
    seqs: dict[str, list[int]] = {}
    for m in got:
        assert m.key is not None and m.topic == TOPIC and m.timestamp > 0
        parts.setdefault(m.key, set()).add(m.partition)
        seqs.setdefault(m.key, []).append(int(m.value.decode().split(":")[1]))
    assert all(len(p) == 1 for p in parts.values())
    assert len({next(iter(p)) for p in parts.values()}) > 1  # keys do spread
    assert all(s == list(range(5)) for s in seqs.values())
    # offsets are dense and increasing within a partition
    for p in range(4):
        offs = [m.offset for m in got if m.partition == p]
        assert offs == list(range(len(offs)))


def test_group_shares_partitions_and_rebalances_on_close() -> None:
    bus = InProcessBus(partitions=4)
    revoked: list[set[tuple[str, int]]] = []
    c1 = bus.consumer([TOPIC], "g", on_revoked=revoked.append)
    c1.poll(0)
    assert c1.assignment() == {(TOPIC, p) for p in range(4)}
    c2 = bus.consumer([TOPIC], "g")
    items = [(f"call-{k}", str(k)) for k in range(40)]
    _send(bus, items)
    got1 = _drain(c1, 1)
    got2 = _drain(c2, 1)
    got1 += _drain(c1, len(items) - len(got1) - len(got2), 0.3)
    got2 += _drain(c2, len(items) - len(got1) - len(got2), 0.3)
    a1, a2 = c1.assignment(), c2.assignment()
    assert a1 and a2 and not a1 & a2 and a1 | a2 == {(TOPIC, p) for p in range(4)}
    assert revoked == [a2]  # c1 gave up exactly what c2 took
    assert {m.partition for m in got1} <= {p for _, p in a1}
    assert {m.partition for m in got2} <= {p for _, p in a2}
    assert sorted(m.value for m in got1 + got2) == sorted(v.encode() for _, v in items)
    c1.commit()
    c2.commit()
    c2.close()
    c1.poll(0)
    assert c1.assignment() == {(TOPIC, p) for p in range(4)}


def test_uncommitted_records_go_to_the_next_member() -> None:
    bus = InProcessBus(partitions=3)
    first = [(f"call-{k}", f"a{k}") for k in range(9)]
    _send(bus, first)
    c1 = bus.consumer([TOPIC], "g")
    assert len(_drain(c1, 9)) == 9
    c1.commit()
    second = [(f"call-{k}", f"b{k}") for k in range(6)]
    _send(bus, second)
    assert len(_drain(c1, 6)) == 6
    c1.close()  # crashed before commit
    c2 = bus.consumer([TOPIC], "g")
    again = _drain(c2, 6)
    assert sorted(m.value for m in again) == sorted(v.encode() for _, v in second)
    assert c2.poll(0.05) == []
    # a group joining later has its own offsets; it starts at the oldest record kept,
    # and "g" committed the first nine while it was the only group
    other = _drain(bus.consumer([TOPIC], "other"), 6)
    assert sorted(m.value for m in other) == sorted(v.encode() for _, v in second)


def test_tailing_consumer_sees_only_new_records() -> None:
    bus = InProcessBus(partitions=2)
    _send(bus, [("k1", "old1"), ("k2", "old2")])
    tail = bus.consumer([TOPIC], "ws-tail", from_beginning=False)
    assert tail.poll(0.05) == []

    def later() -> None:
        time.sleep(0.1)
        _send(bus, [("k1", "new1"), ("k2", "new2")])

    t = threading.Thread(target=later)
    t.start()
    got = _drain(tail, 2)  # poll wakes up when a record arrives
    t.join()
    assert sorted(m.value for m in got) == [b"new1", b"new2"]


def test_committed_records_are_dropped_from_memory() -> None:
    bus = InProcessBus(partitions=2)
    _send(bus, [(f"k{i}", str(i)) for i in range(20)])
    fast = bus.consumer([TOPIC], "fast")
    slow = bus.consumer([TOPIC], "slow")
    assert len(_drain(fast, 20)) == 20
    fast.commit()
    held = sum(len(p.records) for p in bus._topics[TOPIC])
    assert held == 20  # "slow" has committed nothing yet
    assert len(_drain(slow, 20)) == 20
    slow.commit()
    assert sum(len(p.records) for p in bus._topics[TOPIC]) == 0
    # offsets keep counting after trimming
    tail = bus.consumer([TOPIC], "tail", from_beginning=False)
    tail.poll(0)
    _send(bus, [("k0", "x")])
    (m,) = _drain(fast, 1)
    assert m.offset > 0 and m.value == b"x"
    fast.commit()
    assert len(_drain(slow, 1)) == 1
    slow.commit()
    assert len(_drain(tail, 1)) == 1  # a tailing group never commits, yet pins nothing
    assert sum(len(p.records) for p in bus._topics[TOPIC]) == 0
