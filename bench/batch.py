"""Batch benchmark: a 10-minute two-channel 8 kHz mu-law call through `callpipe transcribe`
versus plain faster-whisper `WhisperModel.transcribe` on each channel.

Prints wall time, real-time factor, their ratio, WER of both against the known words and
peak memory of each. Usage: python bench/batch.py [--minutes 10] [--out bench/out]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

from models.piper import load_voice
from models.whisper import resolve_whisper
from pipeline.config import Settings
from pipeline.media.resample import float_to_int16, resample
from stt.normalise import wer

LINES = [
    ("agent", "Good morning, thank you for calling customer service. My name is Paul."),
    ("customer", "Hello, I am calling about my last invoice, it looks too high."),
    ("agent", "I am sorry to hear that. Can you give me your customer number please?"),
    ("customer", "Yes, it is four five six seven eight."),
    ("agent", "Thank you. I can see two charges for the same month on your account."),
    ("customer", "That is exactly the problem. I was charged twice in October."),
    ("agent", "I will refund the second charge today. It takes three to five days."),
    ("customer", "Great. Can you also tell me when my contract ends?"),
    ("agent", "Your contract ends on the thirtieth of June next year."),
    ("customer", "And what happens if I want to cancel before that date?"),
    ("agent", "There is a fee of twenty euros for each remaining month."),
    ("customer", "That sounds expensive. Is there a cheaper plan for me?"),
    ("agent", "Yes, the basic plan costs ten euros less and keeps your number."),
    ("customer", "Please switch me to the basic plan from next month."),
    ("agent", "Done. You will receive a confirmation email in a few minutes."),
    ("customer", "Thank you very much for your help, have a nice day."),
    ("agent", "You are welcome. Is there anything else I can do for you?"),
    ("customer", "No, that is all. Goodbye."),
]


def make_call(minutes: float, seed: int = 3) -> tuple[list[np.ndarray], dict[str, str]]:
    """Two 8 kHz channels of Piper speech, alternating, with pauses and line noise."""

    voice = load_voice(None)
    rng = np.random.default_rng(seed)
    rate = 8000
    cache: dict[str, np.ndarray] = {}
    legs: dict[str, list[np.ndarray]] = {"agent": [], "customer": []}
    words: dict[str, list[str]] = {"agent": [], "customer": []}
    total = 0
    i = 0
    while total < minutes * 60 * rate:
        leg, text = LINES[i % len(LINES)]
        i += 1
        if text not in cache:
            audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
            cache[text] = resample(audio, voice.config.sample_rate, rate)
        speech = cache[text]
        pause = np.zeros(int(rng.uniform(0.6, 3.0) * rate), np.float32)
        other = "customer" if leg == "agent" else "agent"
        legs[leg] += [speech, pause]
        legs[other] += [np.zeros(len(speech), np.float32), pause]
        words[leg].append(text)
        total += len(speech) + len(pause)
    chans = []
    for leg in ("agent", "customer"):
        x = np.concatenate(legs[leg])
        x = x + rng.normal(0, 0.004, len(x)).astype(np.float32)  # line noise, ~-48 dBFS
        chans.append(x.astype(np.float32))
    return chans, {k: " ".join(v) for k, v in words.items()}


def ulaw_wav(chans: list[np.ndarray], rate: int = 8000) -> bytes:
    """Stereo mu-law WAV through PyAV."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        st = out.add_stream("pcm_mulaw", rate=rate, layout="stereo")
        inter = np.stack([float_to_int16(c) for c in chans], 1)
        for s in range(0, len(inter), 4000):
            fr = av.AudioFrame.from_ndarray(
                inter[s : s + 4000].reshape(1, -1), format="s16", layout="stereo"
            )
            fr.sample_rate = rate
            for p in st.encode(fr):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return buf.getvalue()


PLAIN = r"""
import json, resource, sys, time
from faster_whisper import WhisperModel
from pipeline.media.audio_file import load_audio
folder, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
model = WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=2)
audio = load_audio(path)
out = {}
for leg, ch in zip(("agent", "customer"), audio.channels):
    segs, _ = model.transcribe(ch, language="en", beam_size=5, word_timestamps=True)
    out[leg] = " ".join(s.text.strip() for s in segs)
out["wall"] = time.perf_counter() - t0
out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def run_child(cmd: list[str]) -> tuple[str, float, int]:
    """Run a command; (stdout, wall seconds, peak RSS in kB of that child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return r.stdout, wall, max(peak, before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    chans, truth = make_call(args.minutes)
    wav = args.out / "call_ulaw_stereo.wav"
    wav.write_bytes(ulaw_wav(chans))
    duration = len(chans[0]) / 8000
    print(f"made {duration:.0f} s two-channel mu-law call in {time.perf_counter() - t0:.0f} s")
    folder = resolve_whisper("base", Settings().model_cache)
    exe = str(Path(sys.executable).parent / "callpipe")

    # callpipe first, in its own process (peak RSS of that process alone)
    out, cp_wall, cp_rss = run_child(
        [
            exe,
            "transcribe",
            str(wav),
            "--channels",
            "agent,customer",
            "--language",
            "en",
            "--format",
            "json",
        ]
    )
    doc = json.loads(out)
    cp_text = {
        leg: " ".join(u["text"] for u in doc["utterances"] if u["leg"] == leg)
        for leg in ("agent", "customer")
    }
    out, _, _ = run_child([sys.executable, "-c", PLAIN, str(folder), str(wav)])
    plain = json.loads(out)
    plain_wall = plain["wall"]

    def wer_of(texts: dict[str, str]) -> float:
        ref = truth["agent"] + " " + truth["customer"]
        return wer(ref, texts["agent"] + " " + texts["customer"])

    cp_wer, plain_wer = wer_of(cp_text), wer_of(plain)
    print(f"audio: {duration:.1f} s per channel, 2 channels, 8 kHz mu-law, base int8, 2 threads")
    print(
        f"callpipe transcribe : wall {cp_wall:7.1f} s  RTF {cp_wall / duration:.3f}  "
        f"WER {cp_wer * 100:5.2f}%  peak RSS {cp_rss / 1024:.0f} MB"
    )
    print(
        f"plain faster-whisper: wall {plain_wall:7.1f} s  RTF {plain_wall / duration:.3f}  "
        f"WER {plain_wer * 100:5.2f}%  peak RSS {plain['maxrss_kb'] / 1024:.0f} MB"
    )
    print(f"ratio callpipe/plain time: {cp_wall / plain_wall:.2f} (target <= 0.6)")
    print(f"WER difference: {(cp_wer - plain_wer) * 100:+.2f} points (target <= +1)")
    print(f"callpipe peak memory: {cp_rss / 1024:.0f} MB (target < 1536 MB)")


if __name__ == "__main__":
    main()
