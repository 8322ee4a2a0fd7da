"""Where a leg's turn starts: how many turns the live endpointer's pre-roll cuts the start off.

Silero hears a soft first word late ("Oh", "Alright", "Merci"), more so after a silence that
follows speech, so the live path keeps `stt.onset_pad_ms` of audio before an utterance's
first speech frame. On every speech set of the evaluation corpus (sim/corpus.py), each leg
goes through the live endpointer (the live settings, Silero) once per pre-roll; a turn (a
scripted line) is cut when the utterance that holds its start begins after the line's first
voiced sample (-40 dBFS, 10 ms frames). Prints per set and pre-roll the turns cut, and how
late their utterance began (mean, max): what each pre-roll loses before Whisper runs.

    python bench/onsets.py [--sets en-espeak,en-piper,en-noisy,fr-human] [--pads 500,800]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from pipeline.config import Settings
from pipeline.media import SAMPLE_RATE
from pipeline.media.resample import resample
from sim import corpus
from sim.corpus_cache import add_cache_option
from stt.live_decoder import streaming_options
from stt.vad import VadOptions, speech_segments


def late_starts(call: corpus.Call, options: VadOptions) -> tuple[int, list[float]]:
    """Turns of a call, and how late (s) the utterance holding each cut turn began."""
    turns, late = 0, []
    scale = SAMPLE_RATE // corpus.RATE
    for leg in corpus.LEGS:
        spans = speech_segments(resample(call.legs[leg], corpus.RATE, SAMPLE_RATE), options)
        for line in (x for x in call.lines if x.leg == leg):
            turns += 1
            start, end = line.start * scale, line.end * scale
            holding = [s for s, e in spans if e > start and s < end]
            if holding and holding[0] > start:
                late.append((holding[0] - start) / SAMPLE_RATE)
    return turns, late


def main() -> None:
    """Count the turns each pre-roll cuts, per set."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", default="en-espeak,en-piper,en-noisy,fr-human")
    ap.add_argument("--pads", default="0,500,800,1000", help="pre-rolls to try, ms")
    add_cache_option(ap)
    args = ap.parse_args()
    base = streaming_options(Settings()).vad()
    print("set        pre-roll_ms  turns  cut  late_mean_s  late_max_s")
    for name in args.sets.split(","):
        calls = corpus.build(name, cache=args.corpus_cache)
        for pad in (int(p) for p in args.pads.split(",")):
            turns, late = 0, []
            for call in calls:
                n, cut = late_starts(call, replace(base, onset_pad_ms=pad))
                turns += n
                late += cut
            mean = f"{np.mean(late):.2f}" if late else "-"
            worst = f"{max(late):.2f}" if late else "-"
            print(f"{name:10s} {pad:11d} {turns:6d} {len(late):4d} {mean:>12s} {worst:>11s}")


if __name__ == "__main__":
    main()
