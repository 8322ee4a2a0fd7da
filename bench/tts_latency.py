"""TTS benchmark: real-time factor, time to first audio, cached fetch p95, round-trip WER.

Usage: python bench/tts_latency.py [--fetches 300] [--wer-prompts 50] [--runs 5]
(-P: the script's own name would otherwise shadow the `tts` package.)

- first audio: Synthesizer.stream (the path of POST /v1/tts on a cache miss), from the call
  to the first audio chunk, for a one-sentence and a five-sentence prompt; and the same over
  HTTP (first audio byte of POST /v1/tts, uncached text) against the app under uvicorn.
- cached fetch: POST /v1/tts and GET /v1/ivr/{menu}/nodes/{node}/prompt.wav of a cached
  prompt over a real socket (uvicorn in a thread, httpx keep-alive client).
- round trip: prompts rendered to 8 kHz mu-law WAV, decoded, resampled to 16 kHz,
  transcribed by the project's Whisper (language en), WER normalised (stt.normalise.wer).
"""

from __future__ import annotations

import io
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import uvicorn
from piper import PiperVoice

from app.api import create_app
from app.services import build_services
from pipeline.auth import keys_of
from pipeline.config import Settings
from pipeline.media.resample import resample
from pipeline.services import Services
from stt.normalise import wer
from stt.transcriber import transcriber_of
from tts.formats import get_format
from tts.synth import Synthesizer

ONE = "Thank you for calling Acme, how can we help you today?"
FIVE = (
    "Thank you for calling Acme. Our offices are open from nine to five. "
    "For sales, press one. For support, press two. To hear these options again, press nine."
)
# IVR-like prompts with numbers, times, prices and phone numbers (what text.py prepares).
WER_PROMPTS = [
    "Thank you for calling. Your call is important to us.",
    "For sales, press 1. For support, press 2.",
    "Our offices are open from 9am to 5pm, Monday to Friday.",
    "Please hold while we transfer your call.",
    "Please leave a message after the tone.",
    "All of our agents are busy at the moment.",
    "To hear these options again, press the star key.",
    "Goodbye and have a nice day.",
    "Your current balance is $12.50.",
    "The next available appointment is at 10:30 tomorrow morning.",
    "Our store closes at 8pm on Saturdays.",
    "You are caller number 3 in the queue.",
    "The estimated waiting time is 4 minutes.",
    "To speak to an operator, press 0.",
    "For billing questions, press 3.",
    "If you know your party's extension, you may dial it at any time.",
    "Please enter your account number followed by the pound key.",
    "We could not find that account. Please try again.",
    "Your package was shipped on Monday and should arrive within 2 days.",
    "For opening hours and directions, press 4.",
    "Our new address is 25 Market Street.",
    "The monthly subscription costs $30.",
    "You can also reach us by email at any time.",
    "This call may be recorded for quality and training purposes.",
    "Please say yes or no after the tone.",
    "Sorry, I did not understand your choice.",
    "Your payment of $45 has been received. Thank you.",
    "To cancel your order, press 5.",
    "For technical support with your internet connection, press 6.",
    "Our customer service team is available 24 hours a day.",
    "The office is closed for the holidays until January 3rd.",
    "Please have your invoice number ready.",
    "To repeat this message, press 9.",
    "Your reference number is 4 7 2 9.",
    "We are experiencing a high volume of calls.",
    "Please stay on the line and the next available agent will help you.",
    "To return to the main menu, press the star key.",
    "Visit our website to manage your account online.",
    "The delivery fee is $5.99 for orders under $50.",
    "Our hotline opens at 7:45 every morning.",
    "Press 7 to change your password.",
    "Your appointment has been confirmed for Friday at 2pm.",
    "We will call you back within 1 hour.",
    "The conference starts on the 15th of March.",
    "Your order contains 3 items.",
    "To update your address, press 8.",
    "I am transferring you to the accounts department now.",
    "Please speak clearly after the beep.",
    "Welcome back. What would you like to do today?",
    "Thank you for your patience. Goodbye.",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_thread_voice(services: Services) -> PiperVoice:
    """The voice with intra_op_num_threads=1: on 2 busy cores one thread waits on no other."""
    import onnxruntime

    from models.piper import resolve_voice

    path = str(resolve_voice(services.settings.tts.voice))
    voice = PiperVoice.load(path)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    voice.session = onnxruntime.InferenceSession(
        path, sess_options=opts, providers=["CPUExecutionProvider"]
    )
    return voice


def bench_first_audio(synths: dict[str, Synthesizer], runs: int) -> None:
    """Time to the first audio chunk of Synthesizer.stream, and the real-time factor.

    The voices take turns run by run, so a burst of load on the shared machine hits both.
    """
    fmt = get_format("ulaw8k")
    # The machine is shared: the load says how much of the CPU the figures had.
    print("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for name, text in [("1 sentence", ONE), ("5 sentences", FIVE)]:
        firsts: dict[str, list[float]] = {v: [] for v in synths}
        rtfs: dict[str, list[float]] = {v: [] for v in synths}
        n = 0
        for _ in range(runs):
            for label, synth in synths.items():
                t0 = time.perf_counter()
                n = 0
                for i, chunk in enumerate(synth.stream(text, fmt, 1.0)):
                    if i == 1:
                        firsts[label].append(time.perf_counter() - t0)
                    n += len(chunk) if i else 0
                rtfs[label].append((time.perf_counter() - t0) / (n / 8000))
        for label in synths:
            f = firsts[label]
            print(
                f"{name} [{label}]: first audio median {statistics.median(f) * 1000:.0f} ms "
                f"(min {min(f) * 1000:.0f}, max {max(f) * 1000:.0f}) over {runs} runs; "
                f"RTF median {statistics.median(rtfs[label]):.3f}; audio {n / 8000:.2f} s"
            )


def bench_http(services: Services, fetches: int, runs: int) -> None:
    """First byte of an uncached POST /v1/tts, and cached fetches, over a real socket."""
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    admin = {"Authorization": f"Bearer {keys_of(services).create('bench', 'admin')}"}
    pbx = {"Authorization": f"Bearer {keys_of(services).create('bench', 'pbx')}"}
    menu = {
        "start": "main",
        "nodes": {
            "main": {
                "prompt": FIVE,
                "options": [{"digit": "1", "action": {"kind": "transfer", "queue": "sales"}}],
            }
        },
    }
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as c:
        for name, text in [("1 sentence", ONE), ("5 sentences", FIVE)]:
            firsts: list[float] = []
            for i in range(runs):
                body = {"text": f"{text} Reference {i + 1}.", "format": "ulaw8k"}
                t0 = time.perf_counter()
                with c.stream("POST", "/v1/tts", json=body, headers=pbx) as r:
                    assert r.status_code == 200, r.read()
                    got = 0
                    for part in r.iter_raw():
                        got += len(part)
                        if got > 46 and len(firsts) == i:  # past the WAV header: audio
                            firsts.append(time.perf_counter() - t0)
                    # Read to the end: the rest of the prompt is synthesised anyway, and
                    # would otherwise overlap the next request's first piece.
            print(
                f"HTTP POST /v1/tts {name}, uncached: first audio byte median "
                f"{statistics.median(firsts) * 1000:.0f} ms over {runs}"
            )
        assert c.put("/v1/ivr/bench", json=menu, headers=admin).status_code == 200
        fetches_of: list[tuple[str, str, str, dict[str, Any]]] = [
            (
                "POST /v1/tts (cached)",
                "POST",
                "/v1/tts",
                {"json": {"text": FIVE, "format": "ulaw8k"}},
            ),
            (
                "GET prompt.wav (cached)",
                "GET",
                "/v1/ivr/bench/nodes/main/prompt.wav?format=ulaw8k",
                {},
            ),
        ]
        for label, method, url, kw in fetches_of:
            times = []
            for _ in range(fetches):
                t0 = time.perf_counter()
                r = c.request(method, url, headers=pbx, **kw)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200 and len(r.content) > 8000
            print(
                f"{label} over HTTP: p50 {np.percentile(times, 50) * 1000:.2f} ms, "
                f"p95 {np.percentile(times, 95) * 1000:.2f} ms over {fetches} "
                f"({len(r.content)} bytes)"
            )
    server.should_exit = True


def bench_wer(services: Services, synth: Synthesizer, count: int) -> None:
    """Round trip: 8 kHz mu-law WAV -> 16 kHz -> Whisper (en) -> normalised WER."""
    prompts = WER_PROMPTS[:count]
    clips = []
    t0 = time.perf_counter()
    for p in prompts:
        with av.open(io.BytesIO(synth.render(p, get_format("ulaw8k"), 1.0)), "r") as f:
            pcm = np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(audio=0)])
        clips.append(resample(pcm.astype(np.float32) / 32768.0, 8000, 16000))
    synth_s = time.perf_counter() - t0
    transcriber = transcriber_of(services)
    hyps = [" ".join(s.text for s in transcriber.transcribe(c, "en")[0]) for c in clips]
    per = [wer(p, h) for p, h in zip(prompts, hyps, strict=True)]
    total = wer(" ".join(prompts), " ".join(hyps))
    print(
        f"round trip WER over {len(prompts)} prompts (ulaw8k -> Whisper en): {total:.3f} "
        f"({sum(1 for w in per if w == 0)} prompts exact; synthesis {synth_s:.1f} s)"
    )
    for p, h, w in zip(prompts, hyps, per, strict=True):
        if w:
            print(f"  {w:.2f}  {p!r} -> {h!r}")


def main() -> None:
    """Run the measures and print them."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--fetches", type=int, default=300)
    ap.add_argument("--wer-prompts", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(data_dir=Path(tmp)))
        synth = Synthesizer(services)
        synth.render("Warm up the voice.", get_format("ulaw8k"), 1.0)
        one = Synthesizer(services, _one_thread_voice(services))
        one.render("Warm up the voice.", get_format("ulaw8k"), 1.0)
        # "shared": services.piper_voice() as loaded (onnxruntime default threads).
        bench_first_audio({"shared voice": synth, "1-thread session": one}, args.runs)
        bench_http(services, args.fetches, args.runs)
        if args.wer_prompts:
            bench_wer(services, synth, args.wer_prompts)
        services.close()


if __name__ == "__main__":
    main()
