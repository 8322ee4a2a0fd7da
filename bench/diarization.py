"""Who said what on a mono recording: the two legs of each two-voice call of the corpus
(sim/corpus.py TWO_VOICE_SETS: the real French voice against espeak-ng, espeak-ng pairs,
Piper against espeak-ng on a noisy line; all through G.711) mixed into one channel as a
PBX records it, transcribed by the batch path, the legs told apart by stt/speakers.py, and
each word's leg checked against the stereo truth: the leg whose channel was speaking at
the word's middle (the corpus knows every line's place on its own channel).

Prints per set: words, words on the right leg, and the time the speaker step took
against the transcription's (the same run's reference).

    python bench/diarization.py [--sets fr-two-voices,en-espeak,en-noisy] [--small]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.speaker import load_speaker_encoder  # noqa: E402
from models.whisper import load_whisper  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.media.audio_file import DecodedAudio  # noqa: E402
from pipeline.media.resample import resample  # noqa: E402
from sim import corpus  # noqa: E402
from sim.corpus_cache import add_cache_option  # noqa: E402
from stt.batch import transcribe_recording  # noqa: E402
from stt.speakers import label_speakers  # noqa: E402
from stt.transcriber import Transcriber, options_from  # noqa: E402

SLACK_S = 0.3  # a word's middle this close outside a line still belongs to it


def truth_leg(call: corpus.Call, t: float) -> str | None:
    """The leg speaking at `t` seconds on the stereo call (None: nobody near)."""
    best, best_gap = None, SLACK_S
    for line in call.lines:
        start, end = line.start / corpus.RATE, line.end / corpus.RATE
        gap = 0.0 if start <= t <= end else min(abs(t - start), abs(t - end))
        if gap <= best_gap:
            best, best_gap = line.leg, gap
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(corpus.TWO_VOICE_SETS))
    ap.add_argument("--small", action="store_true")
    add_cache_option(ap)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    settings = Settings()
    st = settings.stt
    model = load_whisper(
        st.model, settings.model_cache, st.compute_type, st.cpu_threads, st.workers
    )
    transcriber = Transcriber(model, options_from(st), model_name=st.model, workers=st.workers)
    encoder = load_speaker_encoder()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Whisper {st.model}")
    print(
        "| set | calls | words | right leg | % | one voice found | speaker step / transcription |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    total_words = total_right = 0
    for name in args.sets.split(","):
        two = name in corpus.TWO_VOICE_SETS
        calls = corpus.build(name, small=args.small, cache=args.corpus_cache)
        words = right = mono = 0
        t_stt = t_spk = 0.0
        for call in calls:
            mixed = sum(call.legs[leg] for leg in corpus.LEGS)
            audio16 = resample(np.clip(mixed, -1, 1).astype(np.float32), corpus.RATE, 16000)
            audio = DecodedAudio((audio16,), corpus.RATE, "pcm", "wav")
            began = time.perf_counter()
            utterances, _ = transcribe_recording(
                transcriber, audio, "mono", "bench", call.name, call.language
            )
            heard = list(utterances)
            t_stt += time.perf_counter() - began
            began = time.perf_counter()
            labelled = label_speakers(heard, audio16, "inbound", encoder)
            t_spk += time.perf_counter() - began
            if all(u.leg == "mono" for u in labelled):
                mono += 1
            for u in labelled:
                for w in u.words or ():
                    leg = truth_leg(call, (w.start + w.end) / 2)
                    if leg is None:
                        continue
                    words += 1
                    right += leg == u.leg
                if args.verbose:
                    print(f"  {call.name} {u.start:6.1f} {u.leg:8} {u.text}")
        pct = f"{100 * right / words:.1f}" if words else "-"
        if two:
            total_words += words
            total_right += right
        else:  # one voice on both legs: the right answer is to keep the call mono
            pct = f"one voice: kept mono {mono} of {len(calls)}"
        print(
            f"| {name} | {len(calls)} | {words} | {right} | {pct} | {mono} |"
            f" {t_spk:.1f} s / {t_stt:.1f} s = {t_spk / max(t_stt, 1e-9):.3f} |"
        )
    pct_all = 100 * total_right / total_words if total_words else 0.0
    print(f"| two-voice sets | | {total_words} | {total_right} | **{pct_all:.1f}** | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
