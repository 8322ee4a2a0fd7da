"""Live WER without the clock: corpus calls through the live recogniser, as fast as Whisper goes.

Every leg of the evaluation corpus (sim/corpus.py) is cut into the ingest's 160 ms chunks
and fed to a `LegStream` (endpointing, local agreement) as the live worker does; partial
passes are decoded greedily, finals and hangover passes with beam search in a window of
`--window` seconds. With no real time and no load, the finals depend only on the audio and
the options: settings compare without the latency run's noise. Plain faster-whisper (whole
leg, beam 5, the language given) is the reference, in the same run; where it falls back to
a higher temperature it samples at random, so it can differ from one run to the next.
This is how the live defaults were chosen (docs/benchmarks.md):

    python bench/live_wer.py --sets fr-human,en-espeak,en-noisy,en-piper \\
        [--window 8] [--early] [--onset-ms 500] [--vad silero|webrtc] [--verbose]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from pipeline.config import Settings
from pipeline.events import MediaChunk
from pipeline.media.resample import float_to_int16, resample
from sim import corpus
from sim.corpus_cache import add_cache_option
from stt.live_call import LegStream
from stt.normalise import WordErrors, normalise, word_errors
from stt.streaming import ClipDecoder, StreamingOptions

CHUNK = corpus.RATE * 160 // 1000


def leg_finals(
    audio: np.ndarray,
    language: str,
    options: StreamingOptions,
    partial: ClipDecoder,
    final: ClipDecoder,
) -> tuple[str, list[float]]:
    """One leg through a LegStream: the text of its finals, and each final decode's time."""
    pcm = float_to_int16(audio)
    leg = LegStream("leg", options, 0)
    finals: list[str] = []
    took: list[float] = []

    def keep(hyps: list) -> None:  # type: ignore[type-arg]
        finals.extend(h.text for h in hyps if h.final)

    for start in range(0, len(pcm), CHUNK):
        leg.feed(
            MediaChunk(
                tenant="bench",
                call_id="replay",
                leg="agent",
                codec="PCMU",
                sample_rate=corpus.RATE,  # type: ignore[arg-type]
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
        keep(rec.take_ready())
        reqs = rec.requests()
        for urgent in (True, False):
            group = [r for r in reqs if r.urgent == urgent]
            if not group:
                continue
            began = time.perf_counter()
            segments = (final if urgent else partial).transcribe_clips(
                [r.audio for r in group], language
            )
            if urgent:
                took.append((time.perf_counter() - began) / len(group))
            for r, seg in zip(group, segments, strict=True):
                keep(rec.apply(r, seg))
    leg.close()
    keep(leg.recogniser.take_ready())
    for r in leg.recogniser.requests():
        keep(leg.recogniser.apply(r, final.transcribe_clips([r.audio], language)[0]))
    return " ".join(finals), took


def main() -> None:
    """Replay each set and print plain's WER and the live finals' WER."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", default="fr-human,en-espeak,en-noisy,en-piper")
    ap.add_argument("--window", type=float, default=None, help="final window, s (the setting's)")
    ap.add_argument("--early", action="store_true", help="semantic early finals on")
    ap.add_argument("--onset-ms", type=int, default=None, help="pre-roll (the setting's)")
    ap.add_argument("--vad", choices=("silero", "webrtc"), default=None)
    add_cache_option(ap)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print every leg, normalised")
    args = ap.parse_args()
    from faster_whisper import WhisperModel

    from models.whisper import load_whisper, resolve_whisper
    from stt.live_decoder import DecoderOptions, ShortWindowDecoder, streaming_options

    settings = Settings()
    st = settings.stt
    options = streaming_options(settings)
    options = replace(
        options,
        early_final=args.early,
        onset_pad_ms=args.onset_ms if args.onset_ms is not None else options.onset_pad_ms,
        vad_model=args.vad or options.vad_model,
    )
    window = args.window if args.window is not None else st.final_min_window_s
    plain_model = WhisperModel(
        str(resolve_whisper(st.model, settings.model_cache)),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )
    model = load_whisper(
        st.model, settings.model_cache, st.compute_type, st.cpu_threads, st.workers
    )
    partial = ShortWindowDecoder(model, DecoderOptions(beam_size=1))
    final = ShortWindowDecoder(
        model, DecoderOptions(beam_size=settings.live.beam_size, min_frames=int(window * 100))
    )
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: window {window} s, early "
        f"finals {'on' if args.early else 'off'}, onset pad {options.onset_pad_ms} ms, VAD "
        f"{options.vad_model}, hangover {options.hangover_ms} ms"
    )
    print("set         words  plain_wer  live_wer  diff  final_decode_ms(mean/p95)")
    for name in args.sets.split(","):
        plain = live = WordErrors(0, 0, 0)
        took: list[float] = []
        for call in corpus.build(name, small=args.small, cache=args.corpus_cache):
            call_plain = call_live = WordErrors(0, 0, 0)
            for leg in corpus.LEGS:
                ref = call.text_of(leg)
                segs, _ = plain_model.transcribe(
                    resample(call.legs[leg], corpus.RATE, 16000),
                    language=call.language,
                    beam_size=5,
                )
                p_text = " ".join(s.text for s in segs)
                l_text, t = leg_finals(call.legs[leg], call.language, options, partial, final)
                took += t
                call_plain += word_errors(ref, p_text, call.language)
                call_live += word_errors(ref, l_text, call.language)
                if args.verbose:
                    for tag, text in (("REF", ref), ("PLN", p_text), ("LIV", l_text)):
                        print(f"  {call.name} {leg} {tag} {normalise(text, call.language)}")
            plain += call_plain
            live += call_live
            if args.verbose:
                print(
                    f"  {call.name}: {call_plain.words} words, plain {call_plain.rate:.1%}, "
                    f"live {call_live.rate:.1%}"
                )
        print(
            f"{name:10s} {plain.words:6d} {plain.rate * 100:9.1f}% {live.rate * 100:8.1f}% "
            f"{(live.rate - plain.rate) * 100:+5.1f}  {np.mean(took) * 1000:6.0f} / "
            f"{np.percentile(took, 95) * 1000:4.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
