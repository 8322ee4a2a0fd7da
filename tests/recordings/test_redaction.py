"""PII redaction: what is masked and what is not (pure text), the words' times kept, and
real speech (Piper) through the upload, the batch worker and the index: the stored
transcript, its VTT and the search hold the mask, never the number."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.catalog import load_manifest
from pipeline.events import Utterance, Word
from pipeline.media.audio_file import write_wav
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from recordings.index import index_of
from recordings.index.worker import IndexStage
from recordings.redaction import redact_text, redact_utterance
from stt.batch_worker import BatchStage


@pytest.mark.parametrize(
    ("said", "masked"),
    [
        (
            "My card number is 4111 1111 1111 1111, expiry 12/27.",
            "My card number is [CARD], expiry 12/27.",
        ),
        ("Ma carte : 4 9 7 0 1 0 0 0 0 0 0 0 0 0 0 6.", "Ma carte : [CARD]."),
        ("card four one one one one one one one one one one one one one one one", "card [CARD]"),
        # misheard (18 digits, Luhn fails) but said after "card": still a card
        ("My card number is 4,111 1111 1111 11 11 11", "My card number is [CARD]"),
        ("IBAN FR76 3000 6000 0112 3456 7890 189 please", "IBAN [IBAN] please"),
        (
            "Mon numéro de sécurité sociale est 1 84 12 76 451 089 46.",
            "Mon numéro de sécurité sociale est [NIR].",
        ),
        ("Call me on 06 12 34 56 78 or +33 1 40 00 00 00.", "Call me on [PHONE] or [PHONE]."),
        ("write to jean.dupont@example.com", "write to [EMAIL]"),
        ("my email is jean dot dupont at gmail dot com thanks", "my email is [EMAIL] thanks"),
        ("I was born on 12 March 1985 in Lyon.", "I was born on [DOB] in Lyon."),
        ("Je suis née le 3 avril 1990.", "Je suis née le [DOB]."),
    ],
)
def test_personal_data_is_masked_by_kind(said: str, masked: str) -> None:
    assert redact_text(said)[0] == masked


@pytest.mark.parametrize(
    "said",
    [
        "It's 4111-1111-1111-1112, the price is 1,299.99 euros",  # Luhn fails
        "Order number 1234 5678 9012 3456.",  # Luhn fails
        "IBAN FR76 3000 6000 0112 3456 7890 188",  # mod 97 fails
        "The meeting is on 12 March 2025 at 10.",  # a date, no birth cue
        "It costs 49 euros 90 and I paid 3 times.",
        "Your contract number is 2 84 12 76 451 089 99.",  # NIR key wrong
    ],
)
def test_ordinary_numbers_stay(said: str) -> None:
    assert redact_text(said) == (said, [])


def test_the_masked_words_become_one_word_with_their_times() -> None:
    words = [("My", 0.0, 0.2), (" card", 0.2, 0.5), (" is", 0.5, 0.6)]
    words += [(f" {g}", 0.6 + i, 1.5 + i) for i, g in enumerate(["4111", "1111", "1111", "1111."])]
    u = Utterance(
        tenant="acme",
        call_id="c",
        leg="customer",
        utterance_id="u",
        start=0.0,
        end=4.5,
        text="My card is 4111 1111 1111 1111.",
        words=tuple(Word(word=w, start=s, end=e, probability=0.9) for w, s, e in words),
    )
    masked, kinds = redact_utterance(u)
    assert kinds == ["CARD"] and masked.text == "My card is [CARD]."
    assert [(w.word, w.start, w.end) for w in masked.words] == [
        ("My", 0.0, 0.2),
        (" card", 0.2, 0.5),
        (" is", 0.5, 0.6),
        (" [CARD]", 0.6, 4.5),
    ]


def test_spoken_card_numbers_never_reach_the_store_or_the_index(
    services: Services, speak: Callable[..., np.ndarray]
) -> None:
    """Piper says a card number in groups; with redaction on for the tenant, the stored
    transcript (JSON and VTT) and the search hold [CARD], and the number finds nothing."""
    services.settings.redaction.tenants = ["acme"]
    gap = np.zeros(4000, np.float32)
    speech = np.concatenate([gap, speak("My card number is 4111 1111 1111 1111.", 8000), gap])
    client = TestClient(create_app(services))
    pbx = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    r = client.post(
        "/v1/recordings",
        files={"file": ("c.wav", write_wav([speech], 8000), "audio/wav")},
        data={"call_id": "pii-1", "language": "en"},
        headers=pbx,
    )
    assert r.status_code == 202, r.text
    index = WorkerRunner(
        IndexStage(services, index_of(services)), services.bus, services.topics, services.metrics
    )
    WorkerRunner(
        BatchStage(services), services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    ).run_once()
    manifest = load_manifest(services.store, "acme", "pii-1")
    assert manifest is not None and manifest.transcript_key
    doc = json.loads(services.store.get(manifest.transcript_key))
    text = " ".join(u["text"] for u in doc["utterances"])
    assert "[CARD]" in text, text
    stored = json.dumps(doc) + services.store.get(manifest.prefix + "transcript.vtt").decode()
    assert "4111" not in stored and "1111" not in stored
    for _ in range(3):
        index.run_once()
    analyst = {"Authorization": f"Bearer {keys_of(services).create('acme', 'analyst')}"}
    hits = client.get("/v1/search", params={"q": "card"}, headers=analyst).json()["hits"]
    assert hits and "[CARD]" in hits[0]["text"]
    assert client.get("/v1/search", params={"q": "4111"}, headers=analyst).json()["total"] == 0
