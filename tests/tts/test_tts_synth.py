"""Synthesizer streaming: the first audio is out before the rest of the prompt is spoken."""

import io

import av
import numpy as np
import pytest

from pipeline.media.g711 import ulaw_decode
from pipeline.services import Services
from tts.formats import get_format
from tts.synth import Synthesizer, split_first
from tts.text import TextError


def test_split_first() -> None:
    assert split_first("Press one.") == ("Press one.", "")
    assert split_first("Thank you for calling Acme, how can we help you today?") == (
        "Thank you for calling Acme,",
        "how can we help you today?",
    )
    # no early clause break: the first words go alone
    assert split_first("Your call is important to us and will be answered shortly.") == (
        "Your call is important",
        "to us and will be answered shortly.",
    )


def test_first_audio_before_the_rest_is_synthesised(services: Services) -> None:
    synth = Synthesizer(services)
    fmt = get_format("ulaw8k")
    text = "Thank you for calling Acme, how can we help you today? Please hold."
    it = synth.stream(text, fmt, 1.0)
    header = next(it)
    assert header[:4] == b"RIFF" and len(header) == 46
    first = next(it)
    # one short piece synthesised so far, and it is real audio
    assert services.metrics.total("tts_pieces_synthesised_total") == 1
    assert 0.5 < len(first) / 8000 < 2.0
    rest = list(it)
    assert services.metrics.total("tts_pieces_synthesised_total") == 3
    # the streamed file (open-length header) decodes to every sample that was sent
    data = header + first + b"".join(rest)
    with av.open(io.BytesIO(data), "r") as f:
        assert f.streams.audio[0].rate == 8000
        pcm = np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(audio=0)])
    assert len(pcm) == len(data) - len(header)
    # the seam after the head is a short pause, not Piper's full sentence tail (~200 ms):
    # 60 ms are kept after the last sample over 0.01, and mu-law moves where a fading tail
    # crosses 0.01 by a few ms (72 ms measured once, with a 0.07 s bound here)
    head = ulaw_decode(first).astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(head) > 0.01)
    assert (len(head) - loud[-1]) / 8000 <= 0.1


def test_bad_text_fails_before_any_audio(services: Services) -> None:
    with pytest.raises(TextError, match="empty"):
        Synthesizer(services).stream("", get_format("ulaw8k"), 1.0)
    assert services.metrics.total("tts_pieces_synthesised_total") == 0
