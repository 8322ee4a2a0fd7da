"""Whisper through VAD and batching: real weights, Piper speech with known words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from stt.normalise import wer
from stt.transcriber import TranscribeOptions, Transcriber

SR = 16000


@pytest.fixture(scope="module")
def transcriber(whisper_model: Any) -> Transcriber:
    return Transcriber(whisper_model, TranscribeOptions(), model_name="base")


def test_sentences_become_utterances_with_words(
    transcriber: Transcriber, speak: Callable[..., np.ndarray]
) -> None:
    lines = ["Good morning, thank you for calling.", "I would like to cancel my contract."]
    gap = np.zeros(SR, np.float32)
    audio = np.concatenate([gap, speak(lines[0]), gap, speak(lines[1]), gap])
    segments_iter, info = transcriber.transcribe(audio, language="en")
    segments = list(segments_iter)
    assert info.language == "en" and info.duration_after_vad < info.duration
    assert len(segments) == 2
    assert wer(" ".join(lines), " ".join(s.text for s in segments)) < 0.15
    times = [t for s in segments for w in s.words for t in (w.start, w.end)]
    assert times == sorted(times), "word times must be monotonic"
    assert segments[0].start >= 0.7  # first speech after the one-second gap


def test_transcription_is_lazy(transcriber: Transcriber, speak: Callable[..., np.ndarray]) -> None:
    calls: list[int] = []
    original = transcriber.transcribe_clips

    def counting(clips: Any, language: Any, prompt: Any = None) -> Any:
        calls.append(len(clips))
        return original(clips, language, prompt)

    transcriber.transcribe_clips = counting  # type: ignore[method-assign]
    try:
        segs, _ = transcriber.transcribe(speak("Hello there."), language="en")
        assert calls == []
        assert len(list(segs)) == 1 and calls == [1]
    finally:
        del transcriber.transcribe_clips


def test_language_is_detected(transcriber: Transcriber, speak: Callable[..., np.ndarray]) -> None:
    _, info = transcriber.transcribe(speak("Thank you very much for your patience today."))
    assert info.language == "en" and info.language_probability > 0.5


@pytest.mark.parametrize("kind", ["silence", "white noise", "line hum"])
def test_silence_and_noise_give_zero_words(transcriber: Transcriber, kind: str) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(SR * 8) / SR
    audio = {
        "silence": np.zeros(SR * 8),
        "white noise": rng.normal(0, 0.05, SR * 8),
        "line hum": 0.2 * np.sin(2 * np.pi * 50 * t) + rng.normal(0, 0.01, SR * 8),
    }[kind].astype(np.float32)
    segments, _ = transcriber.transcribe(audio, language="en")
    assert [s.text for s in segments] == []


def test_channels_kept_apart_and_interleaved(
    transcriber: Transcriber, speak: Callable[..., np.ndarray]
) -> None:
    a = speak("How can I help you?")
    c = speak("I would like to cancel my contract, please.")
    gap = np.zeros(SR // 2, np.float32)
    agent = np.concatenate([a, gap, np.zeros(len(c), np.float32)])
    customer = np.concatenate([np.zeros(len(a), np.float32), gap, c])
    results, _ = transcriber.transcribe_channels([agent, customer], language="en")
    got = list(results)
    assert [ch for ch, _ in got] == [0, 1]
    assert wer("How can I help you?", got[0][1].text) < 0.2
    assert wer("I would like to cancel my contract, please.", got[1][1].text) < 0.2
    assert got[1][1].start > got[0][1].end
