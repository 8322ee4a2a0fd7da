"""What post-call analytics cost next to transcription: each speech set of the corpus
(sim/corpus.py: the real French voice, espeak-ng and Piper voices, a noisy line; two-leg
calls through G.711) is transcribed by the batch path (the same run's reference), then
each call's statistics, categories (a tenant's set of CATEGORIES rules in English and
French) and redaction (text masks, the audit spans, the audio silenced over them) are run
on its utterances, REPEAT times for a steady figure.

Prints per set: audio, transcription time, each step's time per call, and the steps
together as a share of the transcription time (target: under 1 %).

    python bench/analytics.py [--sets fr-human,en-espeak,en-piper,en-noisy] [--small]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services import build_services  # noqa: E402
from pipeline.config import PrompterSettings, Settings  # noqa: E402
from pipeline.media.audio_file import DecodedAudio  # noqa: E402
from pipeline.media.resample import resample  # noqa: E402
from recordings.audio_masks import mask_audio  # noqa: E402
from recordings.call_stats import call_statistics  # noqa: E402
from recordings.categories import Tagger, parse_categories  # noqa: E402
from recordings.redaction import masked_spans, redact_for  # noqa: E402
from sim import corpus  # noqa: E402
from sim.corpus_cache import add_cache_option  # noqa: E402
from stt.batch import transcribe_recording  # noqa: E402
from stt.transcriber import transcriber_of  # noqa: E402

REPEAT = 20
CHANNELS: dict[str, Literal["agent", "customer"]] = {"0": "agent", "1": "customer"}
# Twenty categories of the kinds a contact centre writes: phrases by leg, regexes, words
# required early in the call, words in its last seconds.
CATEGORIES = "categories:\n" + "".join(
    f"""  - id: c{i}-churn
    title: churn {i}
    said: [{{phrases: ["cancel my contract", "résilier mon contrat", "close my account {i}"],
             leg: customer}}]
  - id: c{i}-notice
    title: notice {i}
    not_said: [{{phrases: ["this call is recorded", "cet appel est enregistré"], leg: agent,
                 within_s: 30}}]
  - id: c{i}-price
    title: price {i}
    said: [{{regex: ['\\b(?:price|prix|tarif)s?\\b'], leg: any}},
           {{keywords: [invoice], last_s: 60}}]
  - id: c{i}-thanks
    title: thanks {i}
    said: [{{keywords: [thanks, merci], leg: agent, last_s: 30}}]
"""
    for i in range(5)
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(corpus.SPEECH_SETS))
    ap.add_argument("--small", action="store_true")
    add_cache_option(ap)
    args = ap.parse_args()
    settings = Settings()
    settings.redaction.enabled = True
    services = build_services(settings)
    transcriber = transcriber_of(services)
    tagger = Tagger(parse_categories(CATEGORIES, "yaml", PrompterSettings()), 20)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Whisper {settings.stt.model}")
    print(f"# {len(tagger.categories.categories)} categories, each step run {REPEAT} times")
    print(
        "| set | calls | audio | transcription | statistics | categories | redaction"
        " | audio masks | analytics / transcription |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    all_audio = all_stt = all_steps = 0.0
    for name in args.sets.split(","):
        calls = corpus.build(name, small=args.small, cache=args.corpus_cache)
        audio_s = t_stt = 0.0
        steps = dict.fromkeys(("statistics", "categories", "redaction", "audio masks"), 0.0)
        for call in calls:
            legs = [resample(call.legs[leg], corpus.RATE, 16000) for leg in corpus.LEGS]
            audio = DecodedAudio(tuple(legs), corpus.RATE, "pcm", "wav")
            began = time.perf_counter()
            heard, info = transcribe_recording(
                transcriber, audio, CHANNELS, "bench", call.name, call.language
            )
            utterances = list(heard)
            t_stt += time.perf_counter() - began
            audio_s += info.duration
            legs_of = {int(c): leg for c, leg in CHANNELS.items()}
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                call_statistics(utterances, info.duration)
                t1 = time.perf_counter()
                tagger.tags(utterances, info.duration)
                t2 = time.perf_counter()
                masked = redact_for(services, utterances)
                spans = masked_spans(masked)
                t3 = time.perf_counter()
                mask_audio(audio.channels, audio.rate, spans, legs_of, "silence", 0.3)
                t4 = time.perf_counter()
                steps["statistics"] += (t1 - t0) / REPEAT
                steps["categories"] += (t2 - t1) / REPEAT
                steps["redaction"] += (t3 - t2) / REPEAT
                steps["audio masks"] += (t4 - t3) / REPEAT
        total = sum(steps.values())
        per_call = {k: f"{1000 * v / len(calls):.2f} ms" for k, v in steps.items()}
        print(
            f"| {name} | {len(calls)} | {audio_s:.0f} s | {t_stt:.1f} s |"
            f" {per_call['statistics']} | {per_call['categories']} | {per_call['redaction']} |"
            f" {per_call['audio masks']} | {100 * total / t_stt:.3f} % |"
        )
        all_audio += audio_s
        all_stt += t_stt
        all_steps += total
    hour = 3600 / all_audio
    print(
        f"| per hour of calls | | 3600 s | {all_stt * hour:.0f} s | | | | |"
        f" {all_steps * hour:.2f} s = {100 * all_steps / all_stt:.3f} % |"
    )
    services.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
