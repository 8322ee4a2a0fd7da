"""How fast this machine decodes, and which thread layout uses its cores best.

The live latency figures move with the machine's speed (a shared VM host can slow it by a
fifth from one quarter of an hour to the next): this is the yardstick a latency run is read
against. It also settles `stt.cpu_threads` x `stt.workers`: the same Whisper weights
(base int8) loaded as one worker of two threads (faster-whisper's default on two cores) and
as two workers of one thread, timed on

- a live clip: the live decoder (`ShortWindowDecoder`, final window) on four Piper lines of
  1-5 s, one clip at a time, greedy and beam 5;
- two streams at once: the same clips decoded from two threads (a final beside a partial,
  two legs of a recording);
- a recording: faster-whisper's `transcribe` (beam 5) on 60 s of speech, and on two such
  legs at once.

Usage:
    python bench/decode_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from models.piper import load_voice
from pipeline.config import Settings
from pipeline.media.resample import resample
from sim.pbx import synthesize

LINES = [
    "I am sorry to hear that. Can you give me your customer number please?",
    "That is exactly the problem. I was charged twice in October.",
    "Great. Can you also tell me when my contract ends?",
    "Yes, please.",
]


def timed(work: Callable[[], object], streams: int) -> float:
    """Seconds for `streams` threads each doing `work` once, all at the same time."""
    threads = [threading.Thread(target=work) for _ in range(streams)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def main() -> None:
    """Print one line per layout and task."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the four clips")
    args = ap.parse_args()
    from models.whisper import load_whisper
    from stt.live_decoder import DecoderOptions, ShortWindowDecoder

    settings = Settings()
    st = settings.stt
    voice = load_voice(None)
    clips = [resample(synthesize(voice, text, 8000), 8000, 16000) for text in LINES]
    gap = np.zeros(8000, np.float32)
    minute = np.concatenate([np.concatenate([c, gap]) for c in clips] * 6)[: 60 * 16000]
    window = int(st.final_min_window_s * 100)
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {now}; clips {len(clips)} x {args.repeat}")
    print("layout        task                          seconds   per item")
    for workers, threads in ((1, 2), (2, 1)):
        model = load_whisper(st.model, settings.model_cache, st.compute_type, threads, workers)
        layout = f"{workers} x {threads} thr"
        for beam in (1, 5):
            decoder = ShortWindowDecoder(model, DecoderOptions(beam_size=beam, min_frames=window))
            decoder.transcribe_clips(clips[:1], "en")  # warm up

            def clips_once(d: ShortWindowDecoder = decoder) -> None:
                for _ in range(args.repeat):
                    for clip in clips:
                        d.transcribe_clips([clip], "en")

            n = args.repeat * len(clips)
            for streams in (1, 2):
                took = timed(clips_once, streams)
                print(
                    f"{layout:12s}  live clip, beam {beam}, {streams} stream(s)   {took:7.2f} "
                    f"{took / n / streams * 1000:7.0f} ms",
                    flush=True,
                )

        def recording(model: Any = model) -> None:
            segments, _ = model.transcribe(minute, language="en", beam_size=5)
            list(segments)

        for streams in (1, 2):
            took = timed(recording, streams)
            print(
                f"{layout:12s}  60 s recording, {streams} leg(s)       {took:7.2f} "
                f"{took / streams:7.2f} s",
                flush=True,
            )
        time.sleep(1.0)  # the idle threads of one layout stop spinning before the next


if __name__ == "__main__":
    main()
