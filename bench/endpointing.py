"""Where a leg's turn ends: a fixed hangover after Silero or webrtcvad, against Smart Turn v3.2.

On every speech set of the evaluation corpus (sim/corpus.py), each leg's pauses are found
by the VAD (every silence of 100 ms or more between two stretches of speech) and sorted by
the corpus's truth: a pause after the end of a scripted line is the end of a turn (the
other party speaks next), any other is a pause inside a line (between sentences or at a
comma, a hesitation). Then each way of ending an utterance is scored on the same pauses:

- a fixed hangover of H ms (today's live path: Silero, 500 ms): a turn's end is known H ms
  after the last voiced frame, and a pause inside a line of H ms or more splits the line
  into two utterances, each decoded alone;
- Smart Turn v3.2 (pipecat's ONNX model, BSD-2, shipped in the `pipecat-ai` wheel; run as
  pipecat's LocalSmartTurnAnalyzerV3 runs it: the turn's last 8 s, Whisper features of the
  normalised waveform, complete when its probability is over 0.5) asked after `--ask-ms`
  of silence: complete ends the utterance there; incomplete waits, up to `--max-ms` of
  silence (pipecat's fallback is 3 s).

Prints per set and way: turn ends found, the silence waited before each (mean, p95), pauses
inside lines, how many of those split a line, and Smart Turn's time per question (one
onnxruntime thread). The end-of-speech to final latency of the live path is this wait plus
the final's decode (bench/live_latency.py).

    python bench/endpointing.py [--sets en-piper,fr-human] [--ask-ms 200] [--max-ms 500,1500]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.media import SAMPLE_RATE
from pipeline.media.resample import resample
from sim import corpus
from sim.corpus_cache import add_cache_option
from stt.vad import VadOptions, speech_segments

_MODEL = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
_WINDOW = 8 * SAMPLE_RATE  # Smart Turn hears the last 8 s of the turn
_END_SLACK = SAMPLE_RATE // 2  # a line's energy end may fall a little before the VAD's


@dataclass(frozen=True)
class Pause:
    """A silence between two stretches of one leg's speech, in 16 kHz samples."""

    start: int
    length: int
    turn_end: bool
    next_start: int


@dataclass
class Score:
    """One way of ending utterances, over a set's pauses."""

    turn_ends: int = 0
    waited_ms: list[float] = field(default_factory=list)
    inside: int = 0
    split: int = 0
    asked_ms: list[float] = field(default_factory=list)

    def count(self, pause: Pause, ended: bool, waited_ms: float) -> None:
        """One pause: a turn's end known after `waited_ms`, or a pause inside a line that
        ended an utterance (`ended`) or not."""
        if pause.turn_end:
            self.turn_ends += 1
            self.waited_ms.append(waited_ms)
        elif pause.length >= SAMPLE_RATE // 10:
            self.inside += 1
            self.split += ended

    def row(self, name: str, way: str) -> str:
        """One printed line."""
        ask = (
            f"{np.mean(self.asked_ms):6.1f} / {np.percentile(self.asked_ms, 95):5.1f}"
            if self.asked_ms
            else "     -"
        )
        return (
            f"{name:10s} {way:28s} {self.turn_ends:5d} {np.mean(self.waited_ms):5.0f} / "
            f"{np.percentile(self.waited_ms, 95):4.0f} ms "
            f"{self.inside:6d} {self.split:6d}   {ask}"
        )


def smart_turn_session() -> Any:
    """Smart Turn v3.2's ONNX model from the installed pipecat-ai wheel, one thread."""
    import onnxruntime

    try:
        path = Path(str(distribution("pipecat-ai").locate_file(_MODEL)))
    except PackageNotFoundError as e:
        raise SystemExit(
            "Smart Turn ships in the pipecat-ai wheel: pip install --no-deps pipecat-ai"
        ) from e
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=so)


@cache
def _features() -> Any:
    """Whisper's log-mel features (faster-whisper's extractor matches pipecat's to 0.007)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor()


def turn_complete(session: Any, audio: np.ndarray) -> tuple[float, float]:
    """Smart Turn's probability that the turn is over, and the seconds it took."""
    extract = _features()
    began = time.perf_counter()
    x = audio[-_WINDOW:].astype(np.float32)
    x = np.pad(x, (_WINDOW - len(x), 0))  # as pipecat: silence before a short turn
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    features = extract(x)[:, :800][None].astype(np.float32)
    p = float(np.asarray(session.run(None, {"input_features": features})[0])[0, 0])
    return p, time.perf_counter() - began


def pauses(call: corpus.Call, leg: str, audio: np.ndarray, vad: str) -> list[Pause]:
    """A leg's pauses of 100 ms or more, each marked a turn's end or not by the script."""
    segments = speech_segments(
        audio,
        VadOptions(
            model=vad,  # type: ignore[arg-type]
            min_silence_duration_ms=100,
            speech_pad_ms=0,
            onset_pad_ms=0,
            min_speech_duration_ms=200,
        ),
    )
    ends = [x.end * SAMPLE_RATE // corpus.RATE for x in call.lines if x.leg == leg]
    out = []
    for i, (_, end) in enumerate(segments):
        nxt = segments[i + 1][0] if i + 1 < len(segments) else len(audio) + 10 * SAMPLE_RATE
        turn_end = any(end - _END_SLACK <= e < nxt for e in ends)
        out.append(Pause(end, nxt - end, turn_end, nxt))
    return out


def score_hangover(found: list[Pause], hangover_ms: int, score: Score) -> None:
    """A fixed hangover: every pause at least that long ends an utterance."""
    h = SAMPLE_RATE * hangover_ms // 1000
    for p in found:
        score.count(p, p.length >= h, hangover_ms)


def score_smart_turn(
    session: Any,
    audio: np.ndarray,
    found: list[Pause],
    ask_ms: int,
    max_ms: int,
    score: Score,
) -> None:
    """Smart Turn asked at `ask_ms` of silence; incomplete waits up to `max_ms`."""
    ask, most = SAMPLE_RATE * ask_ms // 1000, SAMPLE_RATE * max_ms // 1000
    turn_start = 0
    for p in found:
        ended, waited = False, max_ms
        if p.length >= ask:
            prob, took = turn_complete(session, audio[turn_start : p.start + ask])
            score.asked_ms.append(took * 1000)
            if prob > 0.5:
                ended, waited = True, ask_ms
        ended = ended or p.length >= most
        score.count(p, ended, waited)
        if ended:
            turn_start = max(0, p.next_start - SAMPLE_RATE // 5)


def main() -> None:
    """Score each way on each speech set and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", default=",".join(corpus.SPEECH_SETS))
    ap.add_argument("--hangovers", default="300,500,800", help="fixed hangovers, ms")
    ap.add_argument("--ask-ms", type=int, default=200, help="silence before Smart Turn is asked")
    ap.add_argument(
        "--max-ms", default="500,1500", help="silences that end a turn anyway, ms (one way each)"
    )
    add_cache_option(ap)
    args = ap.parse_args()
    session = smart_turn_session()
    hangovers = [int(h) for h in args.hangovers.split(",")]
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        "set        way                          turns  waited mean / p95  inside  split"
        "   smart turn ms (mean / p95)"
    )
    for name in args.sets.split(","):
        scores: dict[str, Score] = {}
        for call in corpus.build(name, cache=args.corpus_cache):
            for leg in corpus.LEGS:
                audio = resample(call.legs[leg], corpus.RATE, SAMPLE_RATE)
                for vad in ("silero", "webrtc"):
                    found = pauses(call, leg, audio, vad)
                    for h in hangovers:
                        way = f"{vad}, hangover {h} ms"
                        score_hangover(found, h, scores.setdefault(way, Score()))
                    if vad != "silero":
                        continue  # Smart Turn is asked at the pauses the live path's VAD finds
                    for most in [int(m) for m in args.max_ms.split(",")]:
                        way = f"silero + smart turn {args.ask_ms}/{most}"
                        score_smart_turn(
                            session,
                            audio,
                            found,
                            args.ask_ms,
                            most,
                            scores.setdefault(way, Score()),
                        )
        for way, score in scores.items():
            print(score.row(name, way), flush=True)


if __name__ == "__main__":
    main()
