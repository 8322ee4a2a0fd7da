"""Mono (mixed) recordings split into agent and customer by voice (stt/speakers.py with
resemblyzer's encoder run in numpy), through the real upload and batch worker: a call of
two voices (the real French voice and espeak-ng) comes back as two legs, each word on the
leg the stereo call had it on; a call of one voice stays `mono`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.cli import main
from models.speaker import load_speaker_encoder
from pipeline.auth import keys_of
from pipeline.media.audio_file import write_wav
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from sim import corpus
from stt.batch_worker import BatchStage
from stt.speakers import two_voices


def _mono_upload(services: Services, call: corpus.Call, direction: str = "inbound") -> dict:
    """The call's two legs mixed into one channel (as a PBX records it), uploaded and
    transcribed by the batch worker; its transcript.json."""
    client = TestClient(create_app(services))
    auth = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    mixed = np.clip(sum(call.legs[leg] for leg in corpus.LEGS), -1, 1)
    r = client.post(
        "/v1/recordings",
        files={"file": ("mixed.wav", write_wav([mixed], corpus.RATE), "audio/wav")},
        data={"call_id": call.name, "language": call.language, "direction": direction},
        headers=auth,
    )
    assert r.status_code == 202, r.text
    WorkerRunner(
        BatchStage(services), services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    ).run_once()
    r = client.get(f"/v1/calls/{call.name}/transcript", headers=auth)
    assert r.status_code == 200, r.text
    doc: dict = r.json()
    return doc


def _right_leg_share(call: corpus.Call, doc: dict) -> float:
    """Words on the leg whose channel was speaking at their middle (the stereo truth)."""
    right = total = 0
    for u in doc["utterances"]:
        for w in u["words"]:
            t = (w["start"] + w["end"]) / 2
            near = [
                line
                for line in call.lines
                if line.start / corpus.RATE - 0.3 <= t <= line.end / corpus.RATE + 0.3
            ]
            if len(near) == 1:
                total += 1
                right += near[0].leg == u["leg"]
    assert total > 30
    return right / total


def test_a_mono_mix_of_two_voices_comes_back_as_agent_and_customer(services: Services) -> None:
    call = corpus.build("fr-two-voices", small=True)[0]
    doc = _mono_upload(services, call)
    assert {u["leg"] for u in doc["utterances"]} == {"agent", "customer"}
    assert _right_leg_share(call, doc) >= 0.9
    assert len({u["utterance_id"] for u in doc["utterances"]}) == len(doc["utterances"])


def test_who_answers_is_named_by_the_direction(services: Services) -> None:
    """On an outbound call the one who speaks first is the customer (they pick up)."""
    call = corpus.build("en-noisy", small=True)[0]
    doc = _mono_upload(services, call, direction="outbound")
    first = min(doc["utterances"], key=lambda u: u["start"])
    assert call.lines[0].leg == "agent" and first["leg"] == "customer"
    assert 1 - _right_leg_share(call, doc) >= 0.9  # every word on the other name


def test_one_voice_stays_mono(services: Services) -> None:
    """Piper on both legs: nothing tells them apart, so no split is made up."""
    call = corpus.build("en-piper", small=True)[0]
    doc = _mono_upload(services, call)
    assert {u["leg"] for u in doc["utterances"]} == {"mono"}


def test_split_off_keeps_mono(services: Services) -> None:
    services.settings.stt.split_mono = False
    doc = _mono_upload(services, corpus.build("fr-two-voices", small=True)[0])
    assert {u["leg"] for u in doc["utterances"]} == {"mono"}


def test_the_encoder_tells_voices_apart() -> None:
    """Embeddings of the same voice are closer than of two voices, and two_voices finds
    them; pure numbers, no transcription."""
    encoder = load_speaker_encoder()
    call = corpus.build("fr-two-voices", small=True)[0]
    vectors, legs = [], []
    for line in call.lines:
        audio = call.legs[line.leg][line.start : line.end]
        mel = encoder.mel_frames(np.repeat(audio, 2))  # 8 kHz to 16 kHz, crudely
        e = encoder.embed(mel[None])[0]
        vectors.append(e)
        legs.append(line.leg)
    m = np.stack(vectors)
    labels = two_voices(m, np.ones(len(m)) * 2.0)
    assert labels is not None
    agent = {int(lab) for lab, leg in zip(labels, legs, strict=True) if leg == "agent"}
    customer = {int(lab) for lab, leg in zip(labels, legs, strict=True) if leg == "customer"}
    assert len(agent) == len(customer) == 1 and agent != customer


def test_the_cli_splits_a_mono_file_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = corpus.build("fr-two-voices", small=True)[0]
    f = tmp_path / "mixed.wav"
    f.write_bytes(write_wav([np.clip(sum(call.legs[leg] for leg in corpus.LEGS), -1, 1)], 8000))
    assert main(["transcribe", str(f), "--language", "fr"]) == 0
    legs = {
        line.split("] ", 1)[1].split(":", 1)[0] for line in capsys.readouterr().out.splitlines()
    }
    assert legs == {"agent", "customer"}
    assert main(["transcribe", str(f), "--language", "fr", "--one-speaker"]) == 0
    legs = {
        line.split("] ", 1)[1].split(":", 1)[0] for line in capsys.readouterr().out.splitlines()
    }
    assert legs == {"mono"}


def test_one_utterance_alone_is_not_a_second_voice() -> None:
    """Six utterances of one voice and one unlike them (a cough, a burst of line noise): the
    lone one is not a party to the call, however far it lies; two like it would be."""
    voice, odd = np.eye(3)[0], np.array([0.5, np.sqrt(0.75), 0.0])
    weights = np.array([2.0] * 6 + [1.0])
    assert two_voices(np.stack([voice] * 6 + [odd]), weights) is None
    two = two_voices(np.stack([voice] * 5 + [odd, odd]), np.array([2.0] * 5 + [1.0, 1.0]))
    assert two is not None and two.tolist() == [0] * 5 + [1, 1]
