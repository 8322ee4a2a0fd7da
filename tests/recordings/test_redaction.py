"""PII redaction: what is masked and what is not (pure text), the words' times kept, and
real speech (Piper) through the upload, the batch worker and the index: the stored
transcript, its VTT and the search hold the mask, never the number."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.catalog import load_manifest
from pipeline.events import DtmfReceived, Utterance, Word
from pipeline.media.audio_file import load_audio, write_wav
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from recordings.audio_masks import mask_audio
from recordings.index import index_of
from recordings.index.worker import IndexStage
from recordings.redaction import (
    DIGIT_WORDS,
    Masked,
    masked_spans,
    redact_for,
    redact_presses,
    redact_text,
    redact_utterance,
)
from sim.corpus import FR_SOUNDS, espeak
from stt.batch_worker import BatchStage
from stt.transcriber import transcriber_of


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
        # spelled and dashed, a zero doubled by recognition: after its cue, or spelled
        ("F-R-7 -6-3-0-0-0-6-0-0-0-0-0-1-1-2-3-4-5-6-7-8-9-0-1-8-9", "[IBAN]"),
        ("My IBAN is FR-766-300-6000-0112-34567890-189", "My IBAN is [IBAN]"),
        # its country written "FR", its digits said one by one, two zeros gained, no cue
        ("FR 7 -6-3-0-0-0-0-6-0-0-0-0-0-1, 1, 2, 3, 4, 5, 6, 7, 8-9-0-1-8-9", "[IBAN]"),
        # its country spelled in lower case, a zero lost, no cue
        (
            "f, r, 7, 6, 3, 0, 0, 0, 6, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 8, 9.",
            "[IBAN].",
        ),
        # its country and check digits misheard ("sept" as "SET", an "L" gained): as many
        # digits said one by one as only an account number has
        ("F-R-SET -6-3-0-0-0-0-6-0-0-0-0-0-1-1-2-3-4-5-6-7-8-9-0-1-8-9", "F-R-SET -[IBAN]"),
        (
            "F-L-R-7 -6-3-0-0-0-6-0-0-0-0-0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 8, 9,",
            "F-L-R-[IBAN],",
        ),
        # its country spelled but misheard ("F" heard as "S"), with no cue
        (
            "S, R, 7, 6, 3, 0, 0, 0, 6, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 8, 9.",
            "[IBAN].",
        ),
        # French tens and units as Whisper writes them ("quatre-vingt quatre": "80 4")
        ("1, 80, 4, 12, 70, 6, 4, 50, 1, 0, 80, 9, 46.", "[NIR]."),
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
        "Reference FR76 3000 6000 0112 3456 7890 188",  # mod 97 fails, no IBAN cue
        "Vehicle W B A 1 2 3 4 5 6 7 8 9 0 1 2 3 4.",  # a VIN spelled: three letters
        "Flight A F 1 2 3 4, seat 12.",  # two letters spelled, too few digits for an IBAN
        "Il y a 2 ans, au 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9.",  # 19 digits, no account
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


FR_DIGITS = FR_SOUNDS / "digits"
CARD = "4539148803436467"  # a Luhn-valid test Visa number
NIR = "165033511000532"  # its key 32 checks
IBAN = "FR7630006000011234567890189"
ORDER = "1234567890123456"  # 16 digits, Luhn fails: an order number, not a card


def _clips(*names: str) -> np.ndarray:
    """The real French voice (asterisk-core-sounds-fr-wav) saying its prompts in a row."""
    gap = np.zeros(int(0.12 * 8000), np.float32)
    parts = []
    for name in names:
        parts += [load_audio(FR_SOUNDS / f"{name}.wav", rate=8000).channels[0], gap]
    return np.concatenate(parts)


def _digits(number: str) -> list[str]:
    return [f"digits/{d}" for d in number]


def _call(*turns: np.ndarray) -> np.ndarray:
    """Turns one after another, with pauses long enough to make each its own utterance."""
    pause = np.zeros(int(1.5 * 8000), np.float32)
    return np.concatenate([pause, *(np.concatenate([t, pause]) for t in turns)])


def _transcribe(services: Services, call_id: str, audio: np.ndarray, language: str) -> dict:
    client = TestClient(create_app(services))
    pbx = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    r = client.post(
        "/v1/recordings",
        files={"file": ("c.wav", write_wav([audio], 8000), "audio/wav")},
        data={"call_id": call_id, "language": language},
        headers=pbx,
    )
    assert r.status_code == 202, r.text
    WorkerRunner(
        BatchStage(services), services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    ).run_once()
    manifest = load_manifest(services.store, "acme", call_id)
    assert manifest is not None and manifest.transcript_key, manifest
    return {
        "manifest": manifest,
        "doc": json.loads(services.store.get(manifest.transcript_key)),
        "vtt": services.store.get(manifest.prefix + "transcript.vtt").decode(),
    }


def _heard_digits(services: Services, audio: np.ndarray, language: str) -> str:
    """The digits the project's STT reads in `audio` (digit words count)."""
    segments, _ = transcriber_of(services).transcribe(audio, language)
    text = " ".join(s.text for s in segments)
    words = re.findall(r"\d|[A-Za-zÀ-ÿ]+", text)
    return "".join(w if w.isdigit() else DIGIT_WORDS.get(w.lower(), "") for w in words)


@pytest.mark.parametrize(
    ("language", "mode", "turns", "kinds", "secrets"),
    [
        pytest.param(
            "fr",
            "silence",
            lambda speak: [
                _clips("telephone-number", *_digits(CARD)),  # a card, digit by digit
                # a NIR in French groups: "un, soixante-cinq, zéro trois, trente-cinq, ..."
                _clips(
                    *_digits("1"),
                    "digits/60",
                    "digits/5",
                    *_digits("03"),
                    "digits/30",
                    "digits/5",
                    *_digits("110005"),
                    "digits/30",
                    "digits/2",
                ),  # fmt: skip
                _clips("letters/f", "letters/r", *_digits(IBAN[2:])),  # an IBAN, spelled
                # the card again in French groups: "quarante-cinq, trente-neuf, quatorze, ..."
                _clips(
                    "digits/40",
                    "digits/5",
                    "digits/30",
                    "digits/9",
                    "digits/14",
                    "digits/80",
                    "digits/8",
                    *_digits("03"),
                    "digits/40",
                    "digits/3",
                    "digits/60",
                    "digits/4",
                    "digits/60",
                    "digits/7",
                ),  # fmt: skip
                _clips("telephone-number", *_digits(ORDER)),
            ],
            ["CARD", "NIR", "IBAN", "CARD"],
            [CARD, NIR, IBAN[2:]],
            id="real-french-voice",
        ),
        pytest.param(
            "en",
            "tone",
            lambda speak: [
                speak(
                    "My card number is four five three nine, one four eight eight, "
                    "zero three four three, six four six seven.",
                    8000,
                ),  # fmt: skip
                espeak("en-us", "My card is 4 5 3 9 1 4 8 8 0 3 4 3 6 4 6 7.", 130),
                speak(
                    "My IBAN is F R 7 6, 3 0 0 0, 6 0 0 0, 0 1 1 2, 3 4 5 6, 7 8 9 0, 1 8 9.", 8000
                ),  # fmt: skip
                speak(
                    "My social security number is one, sixty-five, zero three, thirty-five, "
                    "one one zero, zero zero five, thirty-two.",
                    8000,
                ),  # fmt: skip
                speak(
                    "My order number is one two three four, five six seven eight, "
                    "nine zero one two, three four five six.",
                    8000,
                ),  # fmt: skip
            ],
            ["CARD", "CARD", "IBAN", "NIR"],
            [CARD, IBAN[2:], NIR],
            id="piper-and-espeak-english",
        ),
    ],
)
def test_spoken_numbers_are_masked_in_every_artifact_and_silenced_in_the_audio(
    services: Services,
    speak: Callable[..., np.ndarray],
    language: str,
    mode: str,
    turns: Callable[..., list[np.ndarray]],
    kinds: list[str],
    secrets: list[str],
) -> None:
    """Cards, NIRs and IBANs said digit by digit and in groups by real and synthetic voices:
    masked in transcript.json, the VTT and the index (searching them finds nothing); the
    order number (checksum fails) stays; the recording's audio over each mask holds no
    digit the STT can read, while the order number's audio still does."""
    services.settings.redaction.tenants = ["acme"]
    services.settings.redaction.audio = mode  # type: ignore[assignment]
    said = turns(speak)
    out = _transcribe(services, f"pii-{language}", _call(*said), language)
    doc, manifest = out["doc"], out["manifest"]
    texts = [u["text"] for u in doc["utterances"]]
    # the audit says what kind was masked where (a number said across two utterances is
    # one record), never the value
    assert [r["kind"] for r in doc["redactions"]] == kinds, texts
    assert {k for t in texts for k in re.findall(r"\[([A-Z]+)\]", t)} == set(kinds)
    assert all(set(r) == {"kind", "leg", "start", "end"} for r in doc["redactions"])
    stored = re.sub(r"\D", "", json.dumps(doc) + out["vtt"])
    for secret in secrets:
        assert secret[:8] not in stored and secret[-8:] not in stored
    # the order number, said last, may come out as one utterance or several (where Whisper
    # ends a segment differs from one CPU to the next): all those after the last mask
    after = [u for u in doc["utterances"] if u["start"] >= doc["redactions"][-1]["end"]]
    order_text = " ".join(u["text"] for u in after)
    assert after and "[" not in order_text, texts
    assert re.sub(r"\D", "", order_text)[:4] == ORDER[:4], texts
    # the search finds the masks, not the numbers
    index = index_of(services)
    runner = WorkerRunner(
        IndexStage(services, index), services.bus, services.topics, services.metrics
    )
    for _ in range(3):
        runner.run_once()
    client = TestClient(create_app(services))
    analyst = {"Authorization": f"Bearer {keys_of(services).create('acme', 'analyst')}"}
    for secret in secrets:
        for part in (secret[:4], secret[-4:]):
            r = client.get("/v1/search", params={"q": part}, headers=analyst)
            assert r.json()["total"] == 0, (part, r.json())
    # the audio: replaced by the redacted recording, nothing readable under the masks
    assert manifest.recording_key == manifest.prefix + "recording.wav"
    audio = load_audio(services.store.get(manifest.recording_key)).channels[0]
    for r in doc["redactions"]:
        stretch = audio[int(r["start"] * 16000) : int(r["end"] * 16000)]
        assert _heard_digits(services, stretch, language) == "", r
    order_audio = audio[int(after[0]["start"] * 16000) : int(after[-1]["end"] * 16000)]
    assert len(_heard_digits(services, order_audio, language)) >= 8


def _utt(uid: str, leg: str, start: float, end: float, text: str, final: bool = True) -> Utterance:
    return Utterance(
        tenant="acme",
        call_id="c",
        leg=leg,  # type: ignore[arg-type]
        utterance_id=uid,
        start=start,
        end=end,
        text=text,
        final=final,
        words=tuple(
            Word(word=f" {w}", start=start + i * 0.3, end=start + i * 0.3 + 0.25, probability=0.9)
            for i, w in enumerate(text.split())
        ),
    )


def test_a_number_said_across_utterances_is_masked_in_each_and_audited_once(
    services: Services,
) -> None:
    """A card cut by a breath into two utterances of the customer, then a NIR right after
    it: each masked where it was said, one audit record each; the agent's words between
    them are not read into the customer's number."""
    services.settings.redaction.tenants = ["acme"]
    utterances = [
        _utt("u1", "customer", 0.0, 3.0, "my card is 4539 1488"),
        _utt("u2", "agent", 3.2, 3.6, "yes"),
        _utt("u3", "customer", 4.0, 5.5, "0343 6467."),
        _utt("u4", "customer", 6.0, 9.0, "1 65 03 35 110 005 32"),
        _utt("u5", "customer", 9.5, 11.0, "order 1234 5678 9012 3456"),
        # an IBAN's country spelled in lower case, each letter its own utterance
        _utt("u6", "customer", 13.0, 13.3, "f,"),
        _utt("u7", "customer", 14.0, 14.6, "r, 7,"),
        _utt(
            "u8",
            "customer",
            15.2,
            24.0,
            "6, 3, 0, 0, 0, 6, 0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 8, 9,",
        ),
    ]
    out = redact_for(services, utterances)
    assert [u.text for u in out] == [
        "my card is [CARD]",
        "yes",
        "[CARD].",
        "[NIR]",
        "order 1234 5678 9012 3456",
        "[IBAN]",
        "[IBAN]",
        "[IBAN],",
    ]
    spans = [(m.kind, m.leg, round(m.start, 2), round(m.end, 2)) for m in masked_spans(out)]
    assert spans == [
        ("CARD", "customer", 0.9, 4.55),
        ("NIR", "customer", 6.0, 8.05),
        ("IBAN", "customer", 13.0, 22.35),
    ]


def test_a_number_said_again_and_misheard_is_masked_as_the_first_time(
    services: Services,
) -> None:
    """The card said again in French pairs, two of its digits lost by recognition (no
    checksum, no cue): masked, being the card masked before with most of its digits. The
    order number shares 11 digits in a row with the IBAN but is 9 digits shorter: it stays."""
    services.settings.redaction.tenants = ["acme"]
    utterances = [
        _utt("u1", "customer", 0.0, 3.0, "4, 5, 3, 9, 1, 4, 8, 8, 0, 3, 4, 3, 6, 4, 6, 7"),
        _utt("u2", "customer", 9.0, 12.0, "49, 14, 80, 8, 0, 3, 43, 60, 4, 60, 7."),
        _utt("u3", "customer", 20.0, 26.0, "IBAN FR76 3000 6000 0112 3456 7890 189"),
        _utt("u4", "customer", 30.0, 33.0, "order 1234 5678 9012 3456"),
    ]
    assert [u.text for u in redact_for(services, utterances)] == [
        "[CARD]",
        "[CARD].",
        "IBAN [IBAN]",
        "order 1234 5678 9012 3456",
    ]


def test_a_partial_masks_a_card_still_being_said() -> None:
    """Live partials show the number before it is whole: after a card's cue, four digits
    are enough to mask it; a final with the same digits and no 13 of them is not a card."""
    assert redact_text("my card number is 4539 1488")[0] == "my card number is 4539 1488"
    partial, kinds = redact_utterance(_utt("p", "customer", 0, 2, "my card is 4539 1488", False),
                                      partial=True)  # fmt: skip
    assert partial.text == "my card is [CARD]" and kinds == ["CARD"]


@pytest.mark.parametrize("mode", ["silence", "tone"])
def test_the_audio_is_masked_on_the_leg_that_said_it(mode: str) -> None:
    rate = 8000
    agent = np.full(3 * rate, 0.5, np.float32)
    customer = np.full(3 * rate, 0.5, np.float32)
    spans = [Masked("CARD", "customer", 1.0, 1.5)]
    out = mask_audio([agent, customer], rate, spans, {0: "agent", 1: "customer"}, mode, 0.25)  # type: ignore[arg-type]
    assert np.all(out[0] == 0.5) and np.all(agent == 0.5)  # other leg and input untouched
    inside = out[1][int(0.75 * rate) : int(1.75 * rate)]
    assert np.all(out[1][: int(0.74 * rate)] == 0.5) and np.all(out[1][int(1.76 * rate) :] == 0.5)
    if mode == "silence":
        assert np.all(inside == 0.0)
    else:
        assert 0.05 < float(np.sqrt(np.mean(inside**2))) < 0.1 and not np.any(inside == 0.5)
    mono = mask_audio([agent], rate, spans, None, mode, 0.25)  # type: ignore[arg-type]
    assert not np.all(mono[0][int(0.75 * rate) : int(1.75 * rate)] == 0.5)


def test_key_presses_that_spell_a_card_are_dropped_and_audited() -> None:
    """A card keyed into an IVR is personal data as a card said is; a menu choice and an
    order number keyed are not."""

    def press(leg: str, digit: str, start: float) -> DtmfReceived:
        return DtmfReceived(tenant="acme", call_id="c", leg=leg, digit=digit, start=start,  # type: ignore[arg-type]
                            duration=0.1)  # fmt: skip

    keyed = [press("customer", "2", 1.0)]
    keyed += [press("customer", d, 5.0 + i * 0.3) for i, d in enumerate(CARD)]
    keyed += [press("customer", "#", 10.0)]
    keyed += [press("agent", d, 12.0 + i * 0.3) for i, d in enumerate(ORDER)]
    kept, masks = redact_presses(keyed)
    assert "".join(p.digit for p in kept) == "2#" + ORDER
    assert [(m.kind, m.leg, m.start) for m in masks] == [("CARD", "customer", 5.0)]
    assert masks[0].end == pytest.approx(5.0 + 15 * 0.3 + 0.1)
