"""The short-window decoder as finals use it (a minimum window): short phone answers read
once, no loops; a prompt heard as what was said before; fast speech read to its end; a clip
read the same whatever shares its batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pipeline.media import g711
from pipeline.media.resample import float_to_int16, int16_to_float, resample
from stt.live_decoder import DecoderOptions, ShortWindowDecoder
from stt.normalise import normalise

ANSWERS = [
    "Four people.",
    "Three.",
    "No.",
    "Yes.",
    "Twelve.",
    "Two people.",
    "I have no electricity.",
    "Yes, I am happy to continue.",
]


def _phone_clip(speak: Callable[..., np.ndarray], text: str) -> np.ndarray:
    """Piper speech through 8 kHz G.711 mu-law, with the 200 ms pads the live path adds."""
    pcm8 = float_to_int16(speak(text, rate=8000))
    heard = resample(int16_to_float(g711.ulaw_decode(g711.ulaw_encode(pcm8))), 8000, 16000)
    pad = np.zeros(3200, np.float32)
    return np.concatenate([pad, heard, pad])


@pytest.mark.parametrize("beam", [1, 5])
def test_short_answers_are_read_once(
    whisper_model: Any, speak: Callable[..., np.ndarray], beam: int
) -> None:
    decoder = ShortWindowDecoder(whisper_model, DecoderOptions(beam_size=beam, min_frames=300))
    clips = [_phone_clip(speak, t) for t in ANSWERS]
    got = [decoder.transcribe_clips([c], "en")[0] for c in clips]
    texts = [normalise(s.text) if s else "" for s in got]
    wanted = [normalise(t) for t in ANSWERS]
    # Piper says each answer a little differently every run: one misheard word is allowed,
    # a loop ("three three three") or a reading of nothing ("...") is not.
    wrong = [(w, t) for w, t in zip(wanted, texts, strict=True) if w != t]
    assert len(wrong) <= 1, wrong
    for w, t in wrong:
        assert t and len(t.split()) <= len(w.split()) + 1, (w, t)


def test_a_prompt_is_heard_as_what_was_said_before(
    whisper_model: Any, speak: Callable[..., np.ndarray]
) -> None:
    decoder = ShortWindowDecoder(whisper_model, DecoderOptions(beam_size=5, min_frames=300))
    clip = _phone_clip(speak, "My name is Siobhan Ferguson.")
    plain = decoder.transcribe_clips([clip], "en")[0]
    prompted = decoder.transcribe_clips([clip], "en", "Could you spell Siobhan for me?")[0]
    assert plain is not None and prompted is not None
    # Whisper base has no way to know the spelling of the name but from the prompt
    assert "siobhan" not in plain.text.lower(), plain.text
    assert "Siobhan Ferguson" in prompted.text, prompted.text
    assert [w.word.strip(".") for w in prompted.words][-2:] == ["Siobhan", "Ferguson"]
    # a prompt longer than Whisper's context is cut to its end, not refused
    long = decoder.transcribe_clips([clip], "en", "Hello there. " * 300 + "Spell Siobhan?")[0]
    assert long is not None and "Siobhan Ferguson" in long.text, long


FAST = (
    "So the first thing is that the router keeps restarting at night, the second thing is"
    " that the bill for October shows two charges of forty nine ninety nine, and the third"
    " thing is that nobody called me back on Tuesday even though your colleague promised a"
    " technician would phone before noon."
)


@pytest.mark.parametrize("beam", [1, 5])
def test_fast_speech_is_read_to_its_last_word(
    whisper_model: Any, piper_voice: Any, beam: int
) -> None:
    from piper import SynthesisConfig

    # 52 words in 12.5 s (a fast talker), within the 15 s of the longest live utterance
    quick = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=0.85)
    audio = np.concatenate([c.audio_float_array for c in piper_voice.synthesize(FAST, quick)])
    clip = resample(audio, int(piper_voice.config.sample_rate), 16000)
    assert 11.0 < len(clip) / 16000 < 15.0
    decoder = ShortWindowDecoder(whisper_model, DecoderOptions(beam_size=beam, min_frames=300))
    seg = decoder.transcribe_clips([clip], "en")[0]
    assert seg is not None and normalise(seg.text).endswith("before noon"), seg


def test_a_clip_reads_the_same_whatever_clips_share_its_batch(
    whisper_model: Any, speak: Callable[..., np.ndarray]
) -> None:
    # As finals use it: a short answer (repetition penalty on), a sentence (off), both in
    # the minimum window, and a long turn that needs a longer window. Batched together as
    # the worker batches several calls' finals, each must read as it does alone.
    decoder = ShortWindowDecoder(whisper_model, DecoderOptions(beam_size=5, min_frames=800))
    said = ("No.", "Yes, I am happy to continue with the survey today.", FAST)
    clips = [_phone_clip(speak, t) for t in said]
    assert len(clips[0]) < 2.5 * 16000 < len(clips[1]) < 7.5 * 16000 < len(clips[2])
    alone = [decoder.transcribe_clips([c], "en")[0] for c in clips]
    assert all(alone)
    assert decoder.transcribe_clips(clips, "en") == alone
