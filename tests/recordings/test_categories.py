"""Call categories: the rules (words by leg, where in the call, required words absent),
their checks, and the tags a finished call gets through the real batch worker."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.catalog import load_manifest
from pipeline.config import PrompterSettings
from pipeline.events import Utterance
from pipeline.media.audio_file import write_wav
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from prompter.validate import PlaybookInvalid
from recordings.categories import Tagger, parse_categories
from recordings.category_store import call_tags, category_store
from recordings.index import index_of
from recordings.index.worker import IndexStage
from stt.batch_worker import BatchStage

RULES = """
categories:
  - id: churn-risk
    title: Churn risk
    said: [{phrases: ["cancel my contract", "résilier"], leg: customer}]
  - id: no-recording-notice
    title: No recording notice
    not_said: [{phrases: ["this call is recorded"], leg: agent, within_s: 30}]
  - id: polite-close
    title: Closed politely
    said: [{keywords: [goodbye], leg: agent, last_s: 20}]
  - id: saved
    title: Churn prevented
    said:
      - {phrases: ["cancel"], leg: customer}
      - {regex: ['\\bfree (?:months?|weeks?)\\b'], leg: agent}
"""


def _u(leg: str, start: float, text: str) -> Utterance:
    return Utterance(
        tenant="acme",
        call_id="c",
        leg=leg,  # type: ignore[arg-type]
        utterance_id=f"u-{start}",
        start=start,
        end=start + 2.0,
        text=text,
    )


@pytest.fixture
def tagger() -> Tagger:
    return Tagger(parse_categories(RULES, "yaml", PrompterSettings()), regex_timeout_ms=20)


def test_a_call_meets_the_categories_whose_every_condition_holds(tagger: Tagger) -> None:
    call = [
        _u("agent", 1.0, "Hello, this call is recorded."),
        _u("customer", 5.0, "I want to cancel my contracts today."),  # inflected: still a match
        _u("agent", 9.0, "We can give you two free months."),
        _u("agent", 95.0, "Goodbye!"),
    ]
    assert tagger.tags(call, duration=100.0) == ["churn-risk", "polite-close", "saved"]


def test_a_category_id_as_long_as_allowed_still_compiles() -> None:
    long_id = "c" * 64
    rules = f"categories: [{{id: {long_id}, title: T, said: [{{keywords: [refund]}}]}}]"
    tagger = Tagger(parse_categories(rules, "yaml", PrompterSettings()), regex_timeout_ms=20)
    assert tagger.tags([_u("customer", 1.0, "I want a refund")], duration=5.0) == [long_id]


def test_where_and_who_decide(tagger: Tagger) -> None:
    call = [
        _u("agent", 40.0, "this call is recorded"),  # too late for the notice
        _u("agent", 45.0, "do you want to cancel my contract?"),  # the agent, not the customer
        _u("agent", 50.0, "goodbye"),  # not in the last 20 s of a 100 s call
    ]
    assert tagger.tags(call, duration=100.0) == ["no-recording-notice"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("categories: [{id: a, title: A}]", "categories[0]: Value error, category a needs"),
        ("categories: [{id: a, title: A, said: [{phrases: []}]}]", "categories[0].said[0]"),
        ("categories: [{id: a, title: A, said: [{regex: ['(a+)+$']}]}]", "regex[0]"),
        (
            "categories: [{id: a, title: A, said: [{keywords: [x]}]},"
            " {id: a, title: B, said: [{keywords: [y]}]}]",
            "used twice",
        ),
        ("- not a mapping", "mapping"),
    ],
)
def test_bad_categories_are_refused_with_where(text: str, where: str) -> None:
    with pytest.raises(PlaybookInvalid) as err:
        parse_categories(text, "yaml", PrompterSettings())
    assert where in str(err.value), str(err.value)


def test_the_api_stores_categories_and_a_transcribed_call_is_tagged_and_filtered(
    services: Services, speak: Callable[..., np.ndarray]
) -> None:
    """PUT /v1/categories, then a real recording (Piper) through the upload, the batch
    worker and the index: its transcript.json and call list carry the tag, and the call
    list and search filter on it and on its statistics."""
    client = TestClient(create_app(services))
    keys = keys_of(services)
    admin = {"Authorization": f"Bearer {keys.create('acme', 'admin')}"}
    analyst = {"Authorization": f"Bearer {keys.create('acme', 'analyst')}"}
    r = client.put("/v1/categories", content=RULES, headers=admin)
    assert r.status_code == 200 and r.json() == {"categories": 4}, r.text
    assert (
        client.put("/v1/categories", content="categories: [{id: x}]", headers=admin).status_code
        == 422
    )
    assert client.put("/v1/categories", content=RULES, headers=analyst).status_code == 403
    assert client.get("/v1/categories", headers=analyst).json()["source"] == RULES

    index = WorkerRunner(
        IndexStage(services, index_of(services)), services.bus, services.topics, services.metrics
    )
    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([gap, speak("Hello. I want to cancel my contract.", 8000), gap])
    pbx = {"Authorization": f"Bearer {keys.create('acme', 'pbx')}"}
    r = client.post(
        "/v1/recordings",
        files={"file": ("c.wav", write_wav([audio], 8000), "audio/wav")},
        data={"call_id": "cat-1", "language": "en", "direction": "inbound"},
        headers=pbx,
    )
    assert r.status_code == 202, r.text
    WorkerRunner(
        BatchStage(services), services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    ).run_once()
    manifest = load_manifest(services.store, "acme", "cat-1")
    assert manifest is not None and manifest.transcript_key
    doc = json.loads(services.store.get(manifest.transcript_key))
    # one voice, so a mono call: the customer's words are not heard as the customer's (no
    # churn-risk), and no agent said the recording notice
    assert doc["tags"] == ["no-recording-notice"], doc["utterances"]
    for _ in range(3):
        index.run_once()
    calls = client.get("/v1/calls", headers=analyst).json()["calls"]
    assert [(c["call_id"], c["tags"]) for c in calls] == [("cat-1", ["no-recording-notice"])]
    found = client.get("/v1/calls", params={"tag": "no-recording-notice"}, headers=analyst)
    assert found.json()["total"] == 1
    assert (
        client.get("/v1/calls", params={"tag": "churn-risk"}, headers=analyst).json()["total"] == 0
    )
    edge = f"{doc['statistics']['duration_s'] - 1:.1f}"
    over = client.get("/v1/calls", params={"stat": f"duration_s>{edge}"}, headers=analyst)
    under = client.get("/v1/calls", params={"stat": f"duration_s<{edge}"}, headers=analyst)
    assert (over.json()["total"], under.json()["total"]) == (1, 0)
    hits = client.get(
        "/v1/search", params={"q": "contract", "stat": "mono.talk_ratio>=0.99"}, headers=analyst
    )
    assert hits.json()["total"] == 1, hits.json()
    detail = client.get("/v1/calls/cat-1", headers=analyst).json()
    assert detail["statistics"] == doc["statistics"] and detail["tags"] == ["no-recording-notice"]
    bad = client.get("/v1/calls", params={"stat": "loudness>3"}, headers=analyst)
    assert bad.status_code == 400 and "no statistic 'loudness'" in bad.text


def test_a_call_is_stored_untagged_when_its_tenants_rules_cannot_be_read(
    services: Services,
) -> None:
    """A stored document this version cannot read (written by hand, or by a newer release)
    does not stop the call's transcript: no tags, and the error is counted."""
    store = category_store(services)
    store.put("acme", parse_categories(RULES, "yaml", PrompterSettings()), RULES)
    store._db.execute("UPDATE categories SET body = ? WHERE tenant = ?", ('{"rules": 1}', "acme"))
    assert call_tags(services, "acme", "c", [_u("customer", 1.0, "cancel my contract")], 9.0) == []
    assert services.metrics.value("call_tags_errors_total") == 1
