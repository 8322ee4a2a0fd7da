"""The `index` stage on a real bus: finals indexed once, partials skipped, call metadata
from call.started and transcript.ready (via the manifest), bad input dead-lettered."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

import recordings.index.worker
from app.roles import STAGES
from pipeline.catalog import new_manifest, save_manifest
from pipeline.events import (
    CallStarted,
    DeadLetter,
    TranscriptReady,
    Utterance,
    decode_event,
)
from pipeline.ids import call_key
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from recordings.index import index_of
from recordings.index.base import Filters, UtteranceRow
from recordings.index.query import parse_query
from recordings.index.sqlite import SqliteIndex
from recordings.index.worker import IndexStage

WHEN = datetime(2024, 6, 3, 8, 15, tzinfo=UTC)


def run_until(runner: WorkerRunner, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runner.run_once()
        if done():
            return
    raise AssertionError("the index worker did not get there in time")


def utt(
    call_id: str,
    uid: str,
    text: str,
    *,
    final: bool = True,
    start: float = 1.0,
    source: str = "live",
    tenant: str = "acme",
) -> Utterance:
    return Utterance(
        tenant=tenant,
        call_id=call_id,
        leg="customer",
        utterance_id=uid,
        start=start,
        end=start + 2.0,
        text=text,
        final=final,
        source=source,
    )  # type: ignore[arg-type]


def count(services: Services, q: str, tenant: str = "acme") -> int:
    return index_of(services).search(tenant, parse_query(q), Filters(), "time", 0, 10).total


def test_role_is_registered() -> None:
    assert STAGES["index"] is recordings.index.worker.stages


def test_finals_indexed_once_partials_skipped_metadata_merged(
    services: Services, publish_events: Callable[..., None]
) -> None:
    runner = WorkerRunner(
        IndexStage(services, index_of(services)), services.bus, services.topics, services.metrics
    )
    publish_events(
        services,
        utt("k1", "u-1", "je veux résil", final=False),
        utt("k1", "u-1", "je veux résilier mon abonnement"),
        utt("k1", "u-1", "je veux résilier mon abonnement"),  # replay
        CallStarted(
            tenant="acme",
            call_id="k1",
            direction="outbound",
            agent_id="a-5",
            caller="+33111",
            callee="+33222",
            started_at=WHEN,
        ),
        utt("k1", "u-2", "   ", start=4.0),
    )
    run_until(runner, lambda: services.metrics.total("index_calls_total") >= 1)
    index = index_of(services)
    assert count(services, "resilier") == 1
    assert count(services, "resil*") == 1  # the partial's text was never indexed alone
    assert [u.utterance_id for u in index.call_utterances("acme", "k1")] == ["u-1"]
    row = index.get_call("acme", "k1")
    assert row is not None
    assert (row.agent_id, row.direction, row.caller, row.callee) == (
        "a-5",
        "outbound",
        "+33111",
        "+33222",
    )
    assert row.started_at == WHEN and row.prefix == "acme/2024/06/03/k1/"
    assert services.metrics.value("index_skipped_total", reason="partial") == 1
    assert services.metrics.value("index_skipped_total", reason="empty") == 1


def test_transcript_ready_takes_the_manifest(
    services: Services, publish_events: Callable[..., None]
) -> None:
    runner = WorkerRunner(
        IndexStage(services, index_of(services)), services.bus, services.topics, services.metrics
    )
    store = services.store
    rec = call_key("acme", "b1", WHEN, "recording.wav")
    store.put(rec, b"RIFF", "audio/wav")
    save_manifest(
        store,
        new_manifest(
            "acme",
            "b1",
            WHEN,
            recording_key=rec,
            agent_id="a-8",
            direction="inbound",
            caller="+33999",
            status="transcribed",
        ),
    )
    publish_events(
        services,
        utt("b1", "u-b1", "un remboursement s'il vous plaît", source="batch"),
        TranscriptReady(
            tenant="acme",
            call_id="b1",
            json_uri=store.uri(call_key("acme", "b1", WHEN, "transcript.json")),
            vtt_uri="x",
            utterances=1,
            source="batch",
            duration=12.5,
        ),
    )
    run_until(runner, lambda: services.metrics.total("index_calls_total") >= 1)
    row = index_of(services).get_call("acme", "b1")
    assert row is not None and row.started_known
    assert (row.recording_key, row.agent_id, row.caller, row.duration) == (
        rec,
        "a-8",
        "+33999",
        12.5,
    )
    listed = index_of(services).list_calls("acme", Filters(agent_id="a-8"), 0, 10)
    assert [c.call_id for c in listed.items] == ["b1"]  # type: ignore[union-attr]


def test_bad_input_is_dead_lettered_and_others_go_on(
    services: Services, publish_events: Callable[..., None]
) -> None:
    runner = WorkerRunner(
        IndexStage(services, index_of(services)), services.bus, services.topics, services.metrics
    )
    bad_times = Utterance(
        tenant="acme",
        call_id="k2",
        leg="agent",
        utterance_id="u-x",
        start=5.0,
        end=1.0,
        text="à l'envers",
    )
    bad_id = utt("../etc", "u-y", "chemin")
    producer = services.bus.producer()
    producer.send(services.topics.transcripts, "k2", b"{not json")
    producer.flush(5.0)
    publish_events(services, bad_times, bad_id, utt("k3", "u-z", "tout va bien"))
    run_until(runner, lambda: count(services, "bien") == 1)
    dead = services.bus.consumer([services.topics.deadletter], "dl-reader")
    reasons = sorted(DeadLetter.model_validate_json(m.value).reason for m in dead.poll(1.0, 10))
    assert len(reasons) == 3
    assert any("malformed event" in r for r in reasons)
    assert any("ends (1.0) before it starts" in r for r in reasons)
    assert any("call_id '../etc'" in r for r in reasons)
    assert count(services, "envers") == 0


def test_kafka_index_worker(
    distributed_services: Services, publish_events: Callable[..., None]
) -> None:
    services = distributed_services
    runner = WorkerRunner(
        IndexStage(services, index_of(services)),
        services.bus,
        services.topics,
        services.metrics,
        poll_timeout_s=0.2,
    )
    events = [utt(f"q{i}", f"u-q{i}", f"appel numéro {i} résiliation") for i in range(5)]
    publish_events(services, *events, *events)  # at-least-once: duplicates overwrite
    transcripts = services.topics.transcripts
    run_until(
        runner,
        lambda: services.metrics.value("events_in_total", worker="index", topic=transcripts) >= 10,
        timeout_s=60,
    )
    assert count(services, "resiliation") == 5
    assert {decode_event(e.encode()).call_id for e in events} == {
        c.call_id for c in index_of(services).list_calls("acme", Filters(), 0, 10).items
    }


class FlakyIndex(SqliteIndex):
    """A real index whose first utterance write fails (a locked or full disk)."""

    failures = 1

    def upsert_utterances(self, rows: list[UtteranceRow]) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        super().upsert_utterances(rows)


def test_a_failed_batch_is_kept_and_written_next_round(
    services: Services, publish_events: Callable[..., None]
) -> None:
    index = FlakyIndex(services.settings.data_dir / "flaky.sqlite")
    runner = WorkerRunner(
        IndexStage(services, index), services.bus, services.topics, services.metrics
    )
    publish_events(services, utt("f1", "u-f1", "appel important"))
    run_until(runner, lambda: services.metrics.total("index_flush_errors_total") == 1)
    assert index.call_utterances("acme", "f1") == []
    run_until(runner, lambda: len(index.call_utterances("acme", "f1")) == 1)
    index.close()
