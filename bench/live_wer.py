"""Live WER without the clock: the latency benchmark's calls through the live recognition,
decoded as fast as Whisper goes.

Every leg of `bench/live_latency.py`'s calls is coded as PCMU, cut into the ingest's
160 ms chunks and fed to a `LegStream` (endpointing, local agreement, semantic endpoints)
as the live worker does; partial passes are decoded greedily as in the worker, finals and
hangover passes with each `--final` decoder. With no real time and no load, the finals
depend only on the audio and the decoders: two settings' WER compare without the latency
run's noise. Prints, per decoder, the WER of the finals against the script, the batch
path's WER on the same lines, and the mean time of a final decode. Usage:
    python bench/live_wer.py --calls 4 --lines 12 --final 5 --final 1 [--verbose]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
from live_latency import RATE, Call, batch_wer, make_calls

from pipeline.config import Settings
from pipeline.events import MediaChunk
from pipeline.media.g711 import ulaw_decode, ulaw_encode
from pipeline.media.resample import float_to_int16
from pipeline.services import build_services
from pipeline.simulate import synthesize
from stt.live_call import LegStream
from stt.live_worker import streaming_options
from stt.normalise import wer
from stt.streaming import ClipDecoder, Hypothesis, StreamingOptions

CHUNK = RATE * 160 // 1000


def leg_finals(
    audio: np.ndarray, options: StreamingOptions, partial: ClipDecoder, final: Any
) -> tuple[list[Hypothesis], list[float]]:
    """One leg through a LegStream: its finals, and the seconds each final decode took."""
    pcm = ulaw_decode(ulaw_encode(float_to_int16(audio)))
    leg = LegStream("leg", options, 0)
    hyps: list[Hypothesis] = []
    took: list[float] = []
    for start in range(0, len(pcm), CHUNK):
        leg.feed(
            MediaChunk(
                tenant="bench",
                call_id="replay",
                leg="agent",
                codec="PCMU",
                sample_rate=RATE,  # type: ignore[arg-type]
                start_sample=start,
                seq_first=0,
                seq_last=0,
                ts_first=start,
                ts_last=start,
                arrival=0.0,
                pcm=pcm[start : start + CHUNK].tobytes(),
            )
        )
        rec = leg.recogniser
        hyps += rec.take_ready()
        reqs = rec.requests()
        for urgent in (True, False):
            group = [r for r in reqs if r.urgent == urgent]
            if not group:
                continue
            began = time.perf_counter()
            segments = (final if urgent else partial).transcribe_clips(
                [r.audio for r in group], "en"
            )
            if urgent:
                took.append((time.perf_counter() - began) / len(group))
            for r, seg in zip(group, segments, strict=True):
                hyps += rec.apply(r, seg)
    leg.close()
    hyps += leg.recogniser.take_ready()
    for r in leg.recogniser.requests():
        hyps += leg.recogniser.apply(r, final.transcribe_clips([r.audio], "en")[0])
    return [h for h in hyps if h.final], took


def line_texts(call: Call, finals: dict[str, list[Hypothesis]]) -> list[str]:
    """Per script line, the text of the finals that overlap its voiced audio."""
    to8k = RATE / 16000
    return [
        " ".join(
            h.text
            for h in finals[line.leg]
            if h.start * to8k < line.voiced_last and h.end * to8k > line.voiced_first
        )
        for line in call.lines
    ]


def main() -> None:
    """Replay the calls once per --final decoder and print one line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--lines", type=int, default=12, help="script lines per call")
    ap.add_argument("--final", type=int, action="append", help="beam size of finals (repeat)")
    ap.add_argument("--verbose", action="store_true", help="print every line that has errors")
    args = ap.parse_args()
    from faster_whisper import WhisperModel
    from piper import PiperVoice

    from models.piper import resolve_voice
    from models.whisper import resolve_whisper
    from stt.live_decoder import DecoderOptions, ShortWindowDecoder
    from stt.transcriber import TranscribeOptions, Transcriber

    settings = Settings(data_dir=tempfile.mkdtemp(prefix="live-wer-"))
    options = streaming_options(build_services(settings))
    voice = PiperVoice.load(str(resolve_voice(None)))
    calls = make_calls(args.calls, args.lines, lambda text: synthesize(voice, text, RATE))
    model = WhisperModel(
        str(resolve_whisper(settings.stt.model, settings.model_cache)),
        device="cpu",
        compute_type=settings.stt.compute_type,
        cpu_threads=settings.stt.cpu_threads,
    )
    batch = Transcriber(model, TranscribeOptions(beam_size=settings.stt.beam_size))
    batch_errors = [batch_wer(batch, call, line) for call in calls for line in call.lines]
    partial = ShortWindowDecoder(model, DecoderOptions(beam_size=1))
    window = int(settings.stt.final_min_window_s * 100)
    print("final_beam lines wer_live wer_batch final_decode_ms")
    for beam in args.final or [settings.live.beam_size]:
        final = ShortWindowDecoder(model, DecoderOptions(beam_size=beam, min_frames=window))
        errors, took = [], []
        for call in calls:
            finals = {}
            for leg, audio in call.legs.items():
                finals[leg], t = leg_finals(audio, options, partial, final)
                took += t
            for line, text in zip(call.lines, line_texts(call, finals), strict=True):
                errors.append(wer(line.text, text))
                if args.verbose and errors[-1]:
                    print(f"  {errors[-1]:.2f} {line.text} | {text}")
        print(
            f"{beam:10d} {len(errors):5d} {np.mean(errors):8.3f} {np.mean(batch_errors):9.3f} "
            f"{np.mean(took) * 1000:15.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
