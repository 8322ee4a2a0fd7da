"""Accuracy on real and varied speech: plain faster-whisper against callpipe, batch and live.

For every set of the evaluation corpus (sim/corpus.py: a real French voice, espeak-ng and
Piper voices, line noise, all through 8 kHz G.711; music on hold, DTMF tones, silence, line
noise), in one run on the same audio and the same Whisper weights:

- plain: faster-whisper as a user runs it by hand, `WhisperModel(path, device="cpu",
  compute_type="int8", cpu_threads=2)`, each leg of the call's WAV as a whole file
  (`decode_audio(split_stereo=True)`), `transcribe(language=..., beam_size=5)`;
- plain-words (only when asked for): the same with `word_timestamps=True`, as a product
  that gives word times must run it. faster-whisper then starts each next 30 s window at
  the last word's end rather than at the last timestamp token, which reads differently;
- batch: what `callpipe transcribe FILE --language ...` runs after loading the model
  (`load_audio`, `stt.batch.transcribe_recording` with the settings' Transcriber);
- live: each call registered with the real RTP ingest, both legs sent as G.711 RTP in 20 ms
  packets paced in real time over loopback UDP, the `live` role transcribing as `callpipe
  serve` runs it; `--concurrency` calls at a time (the next starts when one ends).

Prints per set and path: WER (errors over the set's reference words, both sides normalised
by stt.normalise in the set's language), words produced on non-speech, decode time of plain
and batch (and their ratio: the batch path's time over plain's, on the same machine in the
same run), and for live the final lag (from the end of a line's voiced audio on the wire to
the arrival of the last final that overlaps it) p50/p95. Where Whisper falls back to a
higher temperature it samples at random, in plain as in callpipe, and CTranslate2 seeds each
of its threads once, at its first sample (`set_random_seed` before a decode does not make it
repeat): two runs on the same audio differ by that much (docs/benchmarks.md, "Runs that
do not repeat").

    python bench/accuracy.py [--small] [--sets fr-human,moh] [--paths plain,batch,live]
        [--paths plain,plain-words]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.events import CallStarted, LegInfo, Utterance, decode_event
from pipeline.media.resample import float_to_int16
from sim import corpus
from sim.corpus_cache import add_cache_option
from stt.normalise import WordErrors, word_errors


@dataclass
class Figures:
    """One path's results on one set."""

    errors: WordErrors = field(default_factory=lambda: WordErrors(0, 0, 0))
    seconds: float = 0.0
    lags: list[float] = field(default_factory=list)
    missing: int = 0  # live: lines with no final at all


def plain_path(
    model: Any, call: corpus.Call, wav: Path, word_timestamps: bool = False
) -> tuple[dict[str, str], float]:
    """Each leg of the file through plain faster-whisper; (text per leg, seconds)."""
    from faster_whisper import decode_audio

    began = time.perf_counter()
    legs = decode_audio(str(wav), split_stereo=True)
    out: dict[str, str] = {}
    for leg, audio in zip(corpus.LEGS, legs, strict=True):
        segments, _ = model.transcribe(
            audio, language=call.language, beam_size=5, word_timestamps=word_timestamps
        )
        out[leg] = " ".join(s.text.strip() for s in segments)
    return out, time.perf_counter() - began


def batch_path(transcriber: Any, call: corpus.Call, wav: Path) -> tuple[dict[str, str], float]:
    """The file through callpipe's batch path; (text per leg, seconds)."""
    from pipeline.media.audio_file import load_audio
    from stt.batch import transcribe_recording

    began = time.perf_counter()
    audio = load_audio(wav)
    utterances, _ = transcribe_recording(
        transcriber, audio, {"0": "agent", "1": "customer"}, "bench", call.name, call.language
    )
    texts: dict[str, list[str]] = defaultdict(list)
    for u in utterances:
        texts[u.leg].append(u.text)
    return {leg: " ".join(texts[leg]) for leg in corpus.LEGS}, time.perf_counter() - began


def live_path(
    calls: list[corpus.Call], settings: Settings, model: Any, concurrency: int
) -> dict[str, tuple[dict[str, str], list[float], int]]:
    """Every call through the real ingest and live role in real time, `concurrency` at once.

    Returns per call: (text of its finals per leg, lag of each line, lines with no final).
    """
    from app.roles import start_role
    from app.services import build_services
    from pipeline.ingest.receiver import RtpIngest
    from sim.pbx import send_leg

    services = build_services(settings)
    services.component("whisper", lambda: model)
    stop = threading.Event()
    received: list[tuple[float, Utterance]] = []
    reader = services.bus.consumer([services.topics.transcripts], "bench-reader")

    def read() -> None:
        while not stop.is_set():
            for m in reader.poll(0.02, 1000):
                ev = decode_event(m.value)
                if isinstance(ev, Utterance) and ev.final:
                    received.append((time.time(), ev))

    threads = start_role(services, "live", stop)
    threads.append(threading.Thread(target=read, daemon=True))
    threads[-1].start()
    ingest = RtpIngest(settings, services.bus, services.metrics)
    ingest.start()
    sent_at: dict[str, float] = {}
    slots = threading.Semaphore(concurrency)

    def play(call: corpus.Call) -> None:
        with slots:
            ev = CallStarted(
                tenant="bench",
                call_id=call.name,
                legs=tuple(LegInfo(leg=leg, codec=call.codec) for leg in corpus.LEGS),
                language=call.language,
            )
            ends = {e.leg: e for e in ingest.register(ev)}
            time.sleep(0.2)
            start = time.monotonic() + 0.1
            sent_at[call.name] = time.time() + 0.1  # wall time of packet 0 of both legs
            senders = [
                threading.Thread(
                    target=send_leg,
                    args=(float_to_int16(call.legs[leg]), ends[leg].host, ends[leg].port),
                    kwargs={"start": start, "codec": call.codec},
                    daemon=True,
                )
                for leg in corpus.LEGS
            ]
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            time.sleep(1.5)  # the last utterance's hangover and final
            ingest.end("bench", call.name)

    players = [threading.Thread(target=play, args=(c,), daemon=True) for c in calls]
    for t in players:
        t.start()
        time.sleep(0.05)
    for t in players:
        t.join()
    time.sleep(3.0)
    ingest.close()
    stop.set()
    for t in threads:
        t.join(30)
    reader.close()
    services.close()

    out = {}
    for call in calls:
        finals = [(t, u) for t, u in received if u.call_id == call.name]
        finals.sort(key=lambda tu: tu[1].start)
        texts: dict[str, str] = {
            leg: " ".join(u.text for _, u in finals if u.leg == leg) for leg in corpus.LEGS
        }
        lags, missing = [], 0
        for line in call.lines:
            lo, hi = line.start / corpus.RATE, line.end / corpus.RATE
            mine = [t for t, u in finals if u.leg == line.leg and u.start < hi and u.end > lo]
            if not mine:
                missing += 1
                continue
            lags.append(max(mine) - (sent_at[call.name] + hi))
        out[call.name] = (texts, lags, missing)
    return out


def main() -> None:
    """Build the corpus, run the paths, print one table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", default=",".join(corpus.SETS))
    ap.add_argument("--paths", default="plain,batch,live")
    add_cache_option(ap)
    ap.add_argument("--small", action="store_true", help="the few seconds per set tests use")
    ap.add_argument("--concurrency", type=int, default=4, help="live calls at a time")
    ap.add_argument("--verbose", action="store_true", help="print every leg's texts")
    args = ap.parse_args()
    paths = args.paths.split(",")
    from faster_whisper import WhisperModel

    from models.whisper import load_whisper, resolve_whisper
    from stt.transcriber import Transcriber, options_from

    tmp = Path(tempfile.mkdtemp(prefix="accuracy-"))
    base = Settings(data_dir=tmp / "data", topic_prefix="bench.")
    st = base.stt
    plain_model = WhisperModel(
        str(resolve_whisper(st.model, base.model_cache)),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )
    model = load_whisper(st.model, base.model_cache, st.compute_type, st.cpu_threads, st.workers)
    transcriber = Transcriber(model, options_from(st), model_name=st.model, workers=st.workers)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Whisper {st.model} "
        f"{st.compute_type}; plain: 1 x 2 threads; callpipe: {st.workers} x {st.cpu_threads}"
    )
    sets = {
        name: corpus.build(name, small=args.small, cache=args.corpus_cache)
        for name in args.sets.split(",")
    }
    results: dict[str, dict[str, Figures]] = {s: defaultdict(Figures) for s in sets}
    texts: dict[tuple[str, str], dict[str, str]] = {}
    wavs = {}
    for calls in sets.values():
        for call in calls:
            wavs[call.name] = tmp / f"{call.name}.wav"
            wavs[call.name].write_bytes(call.wav())
    # One path at a time: CTranslate2's idle threads spin for a while after a decode, and
    # would slow the other path's decodes if the two alternated.
    for path, run, engine in (
        ("plain", plain_path, plain_model),
        ("plain-words", partial(plain_path, word_timestamps=True), plain_model),
        ("batch", batch_path, transcriber),
    ):
        if path not in paths:
            continue
        time.sleep(1.0)
        for name, calls in sets.items():
            for call in calls:
                texts[(call.name, path)], took = run(engine, call, wavs[call.name])
                results[name][path].seconds += took
                print(f"  {path} {call.name}: {took:.1f} s", file=sys.stderr, flush=True)
    if "live" in paths:
        low = 30000 + 2 * int(np.random.default_rng().integers(0, 4000))
        settings = base.model_copy(
            update={
                "live": base.live.model_copy(
                    update={"rtp_port_min": low, "rtp_port_max": low + 200}
                )
            }
        )
        every = [c for calls in sets.values() for c in calls]
        every.sort(key=lambda c: -c.duration)  # the longest first: the waves stay full
        for name, (legs, lags, missing) in live_path(
            every, settings, model, args.concurrency
        ).items():
            texts[(name, "live")] = legs
            set_name = next(s for s, calls in sets.items() if any(c.name == name for c in calls))
            results[set_name]["live"].lags += lags
            results[set_name]["live"].missing += missing
    for name, calls in sets.items():
        for call in calls:
            for path in paths:
                for leg in corpus.LEGS:
                    got = texts[(call.name, path)][leg]
                    results[name][path].errors += word_errors(call.text_of(leg), got, call.language)
                    if args.verbose:
                        print(f"  {call.name} {leg} {path}: {got}")
    print(
        "set        words  plain_wer batch_wer live_wer  d_batch d_live  "
        "nonspeech_words(p/b/l)  plain_s batch_s ratio  live_p50 live_p95 missing"
    )
    for name in sets:
        r = results[name]
        words = r["plain"].errors.words if "plain" in r else r[paths[0]].errors.words

        def pct(path: str, res: dict[str, Figures] = r) -> str:
            return f"{res[path].errors.rate * 100:8.1f}%" if path in paths else "        -"

        def delta(path: str, res: dict[str, Figures] = r) -> str:
            if path not in paths or "plain" not in paths:
                return "      -"
            return f"{(res[path].errors.rate - res['plain'].errors.rate) * 100:+7.1f}"

        hyp = "/".join(
            str(r[p].errors.hypothesis_words) if p in paths else "-"
            for p in ("plain", "batch", "live")
        )
        live_lags = np.array(r["live"].lags) if r["live"].lags else None
        ratio = r["batch"].seconds / r["plain"].seconds if r["plain"].seconds else float("nan")
        print(
            f"{name:10s} {words:5d} {pct('plain')} {pct('batch')} {pct('live')} {delta('batch')} "
            f"{delta('live')}  {hyp if not words else '':>22s}  {r['plain'].seconds:7.1f} "
            f"{r['batch'].seconds:7.1f} {ratio:5.2f}  "
            + (
                f"{np.percentile(live_lags, 50):8.2f} {np.percentile(live_lags, 95):8.2f}"
                if live_lags is not None
                else "       -        -"
            )
            + f" {r['live'].missing:7d}",
            flush=True,
        )
    if "plain-words" in paths:
        print("set        plain_wer  plain_words_wer  d_words")
        for name in sets:
            r = results[name]
            p, w = r["plain"].errors.rate * 100, r["plain-words"].errors.rate * 100
            print(f"{name:10s} {p:8.1f}% {w:15.1f}% {w - p:+8.1f}", flush=True)


if __name__ == "__main__":
    main()
