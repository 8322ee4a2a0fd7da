"""How fast this machine decodes one live clip: a yardstick for the latency benchmark.

The live latency figures move with the machine's speed (a shared VM host can slow it by a
fifth from one quarter of an hour to the next). This times the live decoder
(`ShortWindowDecoder`, Whisper base int8, `stt.cpu_threads` threads, final window) on four
Piper lines of 1-5 s, one clip at a time, greedy and beam 5, so a latency run can be read
against the speed the machine had. Usage:
    python bench/decode_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline.config import Settings
from pipeline.media.resample import resample
from pipeline.simulate import synthesize

LINES = [
    "I am sorry to hear that. Can you give me your customer number please?",
    "That is exactly the problem. I was charged twice in October.",
    "Great. Can you also tell me when my contract ends?",
    "Yes, please.",
]


def main() -> None:
    """Print the mean decode time of a clip, greedy and beam 5."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the four clips")
    args = ap.parse_args()
    from faster_whisper import WhisperModel
    from piper import PiperVoice

    from models.piper import resolve_voice
    from models.whisper import resolve_whisper
    from stt.live_decoder import DecoderOptions, ShortWindowDecoder

    settings = Settings()
    voice = PiperVoice.load(str(resolve_voice(None)))
    clips = [resample(synthesize(voice, text, 8000), 8000, 16000) for text in LINES]
    model = WhisperModel(
        str(resolve_whisper(settings.stt.model, settings.model_cache)),
        device="cpu",
        compute_type=settings.stt.compute_type,
        cpu_threads=settings.stt.cpu_threads,
    )
    window = int(settings.stt.final_min_window_s * 100)
    for beam in (1, 5):
        decoder = ShortWindowDecoder(model, DecoderOptions(beam_size=beam, min_frames=window))
        decoder.transcribe_clips(clips[:1], "en")  # warm up
        began = time.perf_counter()
        for _ in range(args.repeat):
            for clip in clips:
                decoder.transcribe_clips([clip], "en")
        per_clip = (time.perf_counter() - began) / args.repeat / len(clips)
        mean_s = np.mean([len(c) for c in clips]) / 16000
        print(f"beam {beam}: {per_clip * 1000:.0f} ms per clip ({mean_s:.1f} s mean clip)")


if __name__ == "__main__":
    main()
