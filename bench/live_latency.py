"""Live latency benchmark: N simultaneous two-party calls streamed in real time.

Each call is registered with the real RTP ingest and both legs are sent as PCMU RTP in 20 ms
packets, paced in real time over loopback UDP (sim.pbx.send_leg); the ingest
publishes media on the embedded bus where the `live` role runs as `callpipe serve` runs it.
Prints, over all utterances: latency from the publication of an utterance's last voiced
audio to its final event (p50/p95), time from its first voiced audio to its first partial
with stable words (two passes agreed on them), the gaps between partials while a line is
spoken (after its first partial: from one partial to the next, the last to the line's last
voiced audio), WER of the finals against the script and against the batch path
(stt.transcriber.Transcriber on the same audio), and real-time headroom (Whisper busy time /
wall time of the run), and the share of finals that needed no decode after the endpoint:
"prepared" (the pass run in the trailing silence, emitted when the hangover ends or the
silence reaches the padding) and "early" (that pass ended a sentence and was emitted as soon
as it was decoded). A line's latency is that of its last final (a line of two sentences may
give two). Usage:
    python bench/live_latency.py --calls 4 [--calls 8 ...] [--lines 6] [--verbose]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.roles import start_role
from app.services import build_services
from models.piper import load_voice
from pipeline.config import Settings
from pipeline.events import CallStarted, LegInfo, Utterance, decode_event
from pipeline.ingest.receiver import RtpIngest
from pipeline.media.resample import float_to_int16, resample
from sim.pbx import send_leg, synthesize
from stt.normalise import wer

RATE = 8000
LINES = [
    "Good morning, thank you for calling customer service. My name is Paul.",
    "Hello, I am calling about my last invoice, it looks too high.",
    "I am sorry to hear that. Can you give me your customer number please?",
    "Thank you. I can see two charges for the same month on your account.",
    "That is exactly the problem. I was charged twice in October.",
    "I will refund the second charge today. It takes three to five days.",
    "Great. Can you also tell me when my contract ends?",
    "Your contract ends on the thirtieth of June next year.",
    "And what happens if I want to cancel before that date?",
    "There is a fee of twenty euros for each remaining month.",
    "That sounds expensive. Is there a cheaper plan for me?",
    "Yes, the basic plan costs ten euros less and keeps your number.",
]


@dataclass
class Line:
    """One scripted utterance and when its audio was published."""

    call_id: str
    leg: str
    text: str
    start: int  # samples (8 kHz) from call start
    voiced_first: int
    voiced_last: int
    sent_first: float = 0.0  # wall time its first voiced chunk was published
    sent_last: float = 0.0  # wall time its last voiced chunk was published


@dataclass
class Call:
    """A scripted two-party call."""

    call_id: str
    legs: dict[str, np.ndarray]
    lines: list[Line] = field(default_factory=list)


def make_calls(n: int, lines: int, speak: Any) -> list[Call]:
    """Calls alternating agent and customer lines, each call's script rotated."""
    rng = np.random.default_rng(11)
    calls = []
    for c in range(n):
        legs: dict[str, list[np.ndarray]] = {"agent": [], "customer": []}
        call = Call(call_id=f"bench-{c}", legs={})
        pos = int(rng.uniform(0.2, 2.0) * RATE)
        for leg in legs:
            legs[leg].append(np.zeros(pos, np.float32))
        for i in range(lines):
            leg = "agent" if i % 2 == 0 else "customer"
            other = "customer" if leg == "agent" else "agent"
            text = LINES[(c + i) % len(LINES)]
            audio = speak(text)
            voiced = np.nonzero(np.abs(audio) > 0.02)[0]
            call.lines.append(
                Line(call.call_id, leg, text, pos, pos + int(voiced[0]), pos + int(voiced[-1]))
            )
            gap = np.zeros(int(rng.uniform(0.8, 1.5) * RATE), np.float32)
            legs[leg] += [audio, gap]
            legs[other] += [np.zeros(len(audio), np.float32), gap]
            pos += len(audio) + len(gap)
        noise = np.random.default_rng(c)
        for leg, parts in legs.items():
            a = np.concatenate(parts)
            call.legs[leg] = (a + noise.normal(0, 0.003, len(a))).astype(np.float32)
        calls.append(call)
    return calls


def batch_wer(transcriber: Any, call: Call, line: Line) -> float:
    """WER of the batch path (`Transcriber`) on one line's audio, a quarter second after it."""
    clip = call.legs[line.leg][line.start : line.voiced_last + RATE // 4]
    segments, _ = transcriber.transcribe(resample(clip, RATE, 16000), "en")
    return wer(line.text, " ".join(s.text for s in segments))


def run(
    n_calls: int, n_lines: int, speak: Any, transcriber: Any, verbose: bool = False
) -> dict[str, Any]:
    """Stream n_calls at once; returns the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="live-bench-"))
    low = 61000 + 2 * int(np.random.default_rng().integers(0, 2000))
    base = Settings(data_dir=tmp, topic_prefix="bench.")  # CALLPIPE_* env applies
    settings = base.model_copy(
        update={
            "live": base.live.model_copy(update={"rtp_port_min": low, "rtp_port_max": low + 400})
        }
    )
    services = build_services(settings)
    services.component("whisper", lambda: transcriber.model)
    calls = make_calls(n_calls, n_lines, speak)
    stop = threading.Event()
    received: list[tuple[float, Utterance]] = []
    reader = services.bus.consumer([services.topics.transcripts], "bench-reader")

    def read() -> None:
        while not stop.is_set():
            for m in reader.poll(0.05, 1000):
                ev = decode_event(m.value)
                if isinstance(ev, Utterance):
                    received.append((time.time(), ev))

    threads = start_role(services, "live", stop)
    threads.append(threading.Thread(target=read, daemon=True))
    threads[-1].start()
    ingest = RtpIngest(settings, services.bus, services.metrics)
    ingest.start()
    endpoints = {}
    for call in calls:
        ev = CallStarted(
            tenant="bench",
            call_id=call.call_id,
            legs=(LegInfo(leg="agent"), LegInfo(leg="customer")),
        )
        endpoints[call.call_id] = {e.leg: e for e in ingest.register(ev)}
    time.sleep(0.5)
    n = max(len(a) for c in calls for a in c.legs.values())
    start = time.monotonic() + 0.1
    t0 = time.time() + 0.1  # wall time of packet 0 of every leg
    for call in calls:
        for line in call.lines:
            # simulate.packetize sends packet k (samples k*160..) at k * 20 ms
            line.sent_first = t0 + (line.voiced_first // 160) * 0.02
            line.sent_last = t0 + (line.voiced_last // 160) * 0.02
    decode_before = services.metrics.total("live_decode_seconds_total")
    senders = [
        threading.Thread(
            target=send_leg,
            args=(
                float_to_int16(audio),
                endpoints[call.call_id][leg].host,
                endpoints[call.call_id][leg].port,
            ),
            kwargs={"start": start},
            daemon=True,
        )
        for call in calls
        for leg, audio in call.legs.items()
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    wall = time.time() - t0
    busy = services.metrics.total("live_decode_seconds_total") - decode_before
    time.sleep(0.3)
    for call in calls:
        ingest.end("bench", call.call_id)
    time.sleep(3.0)
    ingest.close()
    stop.set()
    for t in threads:
        t.join(30)
    reader.close()

    latencies: list[float] = []
    first_partials: list[float] = []
    gaps: list[float] = []
    errors: list[float] = []
    batch_errors: list[float] = []
    missing = 0
    for call in calls:
        for line in call.lines:
            mine = [
                (t, u)
                for t, u in received
                if u.call_id == call.call_id
                and u.leg == line.leg
                and u.start * RATE < line.voiced_last
                and u.end * RATE > line.voiced_first
            ]
            finals = [(t, u) for t, u in mine if u.final]
            partials = [t for t, u in mine if not u.final]
            stable = [t for t, u in mine if not u.final and u.words]
            if not finals:
                missing += 1
                errors.append(1.0)
                continue
            latencies.append(max(t for t, _ in finals) - line.sent_last)
            if stable:
                first_partials.append(min(stable) - line.sent_first)
            if partials:
                # after the first partial: the stretches of speech with no new partial
                shown = sorted(t for t in partials if t < line.sent_last) + [line.sent_last]
                gaps.extend(np.diff(shown))
            errors.append(wer(line.text, " ".join(u.text for _, u in finals)))
            if verbose:
                print(
                    f"  {call.call_id} {line.leg:8s} {latencies[-1]:5.2f} s "
                    f"{len(finals)} final(s): {' | '.join(u.text for _, u in finals)}"
                )
            batch_errors.append(batch_wer(transcriber, call, line))
    finals_total = services.metrics.total("live_finals_total") or 1.0
    prepared = services.metrics.total("live_finals_prepared_total") / finals_total
    early = services.metrics.total("live_finals_early_total") / finals_total
    services.close()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    fp = np.array(first_partials) if first_partials else np.array([np.nan])
    gap = np.array(gaps) if gaps else np.array([np.nan])
    return {
        "calls": n_calls,
        "legs": 2 * n_calls,
        "utterances": sum(len(c.lines) for c in calls),
        "missing_finals": missing,
        "final_p50_s": float(np.percentile(lat, 50)),
        "final_p95_s": float(np.percentile(lat, 95)),
        "first_partial_p50_s": float(np.percentile(fp, 50)),
        "first_partial_p95_s": float(np.percentile(fp, 95)),
        "partial_gap_p50_s": float(np.percentile(gap, 50)),
        "partial_gap_p95_s": float(np.percentile(gap, 95)),
        "wer_live": float(np.mean(errors)),
        "wer_batch": float(np.mean(batch_errors)),
        "whisper_busy": busy / wall,
        "audio_s": n / RATE,
        "prepared": prepared,
        "early": early,
        "latencies": latencies,
    }


def main() -> None:
    """Run the benchmark for each --calls value and print one line per run."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, action="append", help="simultaneous calls (repeat)")
    ap.add_argument("--lines", type=int, default=6, help="script lines per call")
    ap.add_argument("--verbose", action="store_true", help="print every line's finals")
    args = ap.parse_args()
    from models.whisper import load_whisper
    from stt.transcriber import Transcriber, options_from

    settings = Settings()
    voice = load_voice(None)
    cache: dict[str, np.ndarray] = {}

    def speak(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = synthesize(voice, text, RATE)
        return cache[text]

    st = settings.stt
    model = load_whisper(
        st.model, settings.model_cache, st.compute_type, st.cpu_threads, st.workers
    )
    transcriber = Transcriber(model, options_from(st), model_name=st.model, workers=st.workers)
    print(
        "calls legs utts missing final_p50 final_p95 partial_p50 partial_p95 gap_p50 gap_p95 "
        "wer_live wer_batch whisper_busy prepared early"
    )
    pooled: dict[int, list[float]] = {}
    for n in args.calls or [4]:
        r = run(n, args.lines, speak, transcriber, args.verbose)
        pooled.setdefault(n, []).extend(r["latencies"])
        print(
            f"{r['calls']:5d} {r['legs']:4d} {r['utterances']:4d} {r['missing_finals']:7d} "
            f"{r['final_p50_s']:9.2f} {r['final_p95_s']:9.2f} {r['first_partial_p50_s']:11.2f} "
            f"{r['first_partial_p95_s']:11.2f} {r['partial_gap_p50_s']:7.2f} "
            f"{r['partial_gap_p95_s']:7.2f} {r['wer_live']:8.3f} {r['wer_batch']:9.3f} "
            f"{r['whisper_busy']:12.2f} {r['prepared']:8.2f} {r['early']:5.2f}",
            flush=True,
        )
    for n, lat in pooled.items():
        runs = (args.calls or [4]).count(n)
        if runs > 1:
            print(
                f"{n} calls, {runs} runs pooled ({len(lat)} utterances): final p50 "
                f"{np.percentile(lat, 50):.2f} s, p95 {np.percentile(lat, 95):.2f} s"
            )


if __name__ == "__main__":
    main()
