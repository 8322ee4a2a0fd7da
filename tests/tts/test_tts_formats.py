"""Every format decodes back (PyAV) to the right rate and length, at telephony level."""

import io

import av
import numpy as np
import pytest

from pipeline.media.g711 import alaw_decode, ulaw_decode
from pipeline.services import Services
from tts.formats import FORMATS, FormatError, get_format, normalise_level, render
from tts.synth import Synthesizer


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data), "r") as c:
        frames = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
        rate = c.streams.audio[0].rate
    pcm = np.concatenate(frames).astype(np.float32) / 32768.0
    return pcm, rate


@pytest.fixture(scope="module")
def speech(piper_voice: object) -> tuple[np.ndarray, int]:
    """One Piper utterance (synthesis varies run to run, so all formats share it)."""
    audio = np.concatenate(
        [
            c.audio_float_array
            for c in piper_voice.synthesize(  # type: ignore[attr-defined]
                "Hello, thank you for calling. Press one."
            )
        ]
    )
    return normalise_level(audio), piper_voice.config.sample_rate  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def rendered(speech: tuple[np.ndarray, int]) -> dict[str, bytes]:
    return {n: render(speech[0], speech[1], f) for n, f in FORMATS.items()}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_format_decodes(
    rendered: dict[str, bytes], speech: tuple[np.ndarray, int], name: str
) -> None:
    fmt = FORMATS[name]
    data = rendered[name]
    if fmt.wav:
        audio, rate = _decode(data)
    else:
        audio = ulaw_decode(data) if fmt.coding == "ulaw" else alaw_decode(data)
        audio = audio.astype(np.float32) / 32768.0
        rate = fmt.rate
    assert rate == fmt.rate
    seconds = len(audio) / rate
    assert abs(seconds - len(speech[0]) / speech[1]) < 0.01
    assert seconds > 1.0
    peak = float(np.max(np.abs(audio)))
    # -1 dBFS before coding; G.711's coarse top segment may add a step, still far from 0 dBFS.
    assert peak < 10 ** (-0.5 / 20)
    rms_db = 20 * np.log10(np.sqrt(np.mean(audio[np.abs(audio) > 0.003] ** 2)))
    assert -26 < rms_db < -12


def test_normalise_never_clips() -> None:
    x = np.zeros(8000, dtype=np.float32)
    x[100] = 1.0  # one spike dominates: the peak limit must win over the RMS target
    y = normalise_level(x)
    assert np.max(np.abs(y)) <= 10 ** (-1 / 20) + 1e-6
    assert np.all(normalise_level(np.zeros(10, dtype=np.float32)) == 0)


def test_unknown_format() -> None:
    with pytest.raises(FormatError, match="unknown format"):
        get_format("mp3")


def test_synthesizer_stream_and_pause(services: Services) -> None:
    synth = Synthesizer(services)
    fmt = get_format("l16_8k")
    chunks = list(synth.stream("One. Two. [pause 500ms] Three.", fmt, 1.0))
    # header, then "One." (its first words may go alone), "Two.", the pause, "Three.":
    # streamed piece by piece, the pause as exact silence between "Two." and "Three."
    assert len(chunks) >= 5
    assert chunks[-2] == b"\x00\x00" * 4000
    slow, normal, fast = (
        _speech_seconds(synth.render("Thank you for calling.", fmt, r)) for r in (0.5, 1.0, 2.0)
    )
    # length_scale 2 vs 0.5 gives about 2.5x (not 4x: phonemes keep a minimum length, and
    # Piper's durations are random), so the margin is set for that
    assert slow > 2.0 * fast
    assert slow > 1.3 * normal and normal > 1.2 * fast


def _speech_seconds(wav: bytes) -> float:
    """From the first to the last non-silent sample (Piper's fixed lead-in / tail excluded)."""
    audio, rate = _decode(wav)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return float(loud[-1] - loud[0]) / rate
