"""Post-call statistics from a call's utterances: who talked how long and how fast, the
silences, talking over each other and who cut in on whom (issue 21's first part).

Talk is measured on words when the utterances have them (Whisper's word times), else on
the utterances' spans; a gap under `JOIN_GAP_S` between one leg's words is part of its
talk (the pauses inside a sentence are not silence). Silences are the gaps between
anyone's talk: the time before the first word and after the last is ringing, hold music
or a hang-up, not dead air in the conversation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from pydantic import BaseModel, Field

from pipeline.events import Leg, Utterance

JOIN_GAP_S = 0.3  # shorter pauses between one leg's words are talk
# An overlap shorter than this is a backchannel or a cut word, not talking over.
MIN_OVERLAP_S = 0.2
# One leg's talk with pauses up to this long, the other leg silent, is one monologue.
MONOLOGUE_GAP_S = 2.0

Span = tuple[float, float]


class LegStats(BaseModel):
    """One leg's share of the call."""

    talk_s: float = Field(description="seconds of talk")
    talk_ratio: float = Field(description="this leg's share of all talk, 0-1")
    words: int
    words_per_minute: float = Field(description="words per minute of this leg's talk")
    longest_monologue_s: float = Field(description="longest talk with the other leg silent")
    interruptions: int = Field(description="times this leg started talking over the other")


class CallStats(BaseModel):
    """The call's statistics, stored in transcript.json (`statistics`)."""

    duration_s: float
    talk_s: float = Field(description="seconds when someone talked")
    non_talk_s: float = Field(description="seconds between the first and last word with no talk")
    longest_silence_s: float
    talk_over_count: int
    talk_over_s: float
    legs: dict[str, LegStats]


def _merge(spans: list[Span], gap: float) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s - out[-1][1] < gap:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _total(spans: list[Span]) -> float:
    return sum(e - s for s, e in spans)


def _overlaps(a: list[Span], b: list[Span]) -> list[Span]:
    """The stretches where both lists of (merged) spans hold."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def talk_spans(utterances: Sequence[Utterance], leg: str) -> list[Span]:
    """One leg's talk: its words (or utterances without words), pauses under JOIN_GAP_S
    joined."""
    spans: list[Span] = []
    for u in utterances:
        if u.leg != leg:
            continue
        spans += [(w.start, w.end) for w in u.words] if u.words else [(u.start, u.end)]
    return _merge([(s, e) for s, e in spans if e > s], JOIN_GAP_S)


def _monologues(own: list[Span], other: list[Span]) -> float:
    """The longest run of `own` talk, pauses under MONOLOGUE_GAP_S with `other` silent
    in them joined."""
    longest, run = 0.0, None
    for s, e in own:
        if run is not None and s - run[1] < MONOLOGUE_GAP_S and not _overlaps([(run[1], s)], other):
            run = (run[0], e)
        else:
            run = (s, e)
        longest = max(longest, run[1] - run[0])
    return longest


def call_statistics(utterances: Sequence[Utterance], duration: float) -> CallStats:
    """The statistics of a finished call of `duration` seconds."""
    legs = sorted({u.leg for u in utterances})
    talk = {leg: talk_spans(utterances, leg) for leg in legs}
    anyone = _merge([s for spans in talk.values() for s in spans], 0.0)
    gaps = [b[0] - a[1] for a, b in zip(anyone, anyone[1:], strict=False)]
    over: list[Span] = []
    cut_in = dict.fromkeys(legs, 0)
    for i, a in enumerate(legs):
        for b in legs[i + 1 :]:
            for s, e in _overlaps(talk[a], talk[b]):
                if e - s < MIN_OVERLAP_S:
                    continue
                over.append((s, e))
                # Whoever started later cut in on the one already talking.
                a_start = max(x for x, _ in talk[a] if x <= s)
                b_start = max(x for x, _ in talk[b] if x <= s)
                cut_in[a if a_start > b_start else b] += 1
    all_talk = _total(anyone)
    stats = {}
    for leg in legs:
        t = _total(talk[leg])
        words = sum(len(u.words) or len(u.text.split()) for u in utterances if u.leg == leg)
        others = _merge([s for other in legs if other != leg for s in talk[other]], 0.0)
        stats[leg] = LegStats(
            talk_s=round(t, 3),
            talk_ratio=round(t / all_talk, 3) if all_talk else 0.0,
            words=words,
            words_per_minute=round(words / t * 60, 1) if t else 0.0,
            longest_monologue_s=round(_monologues(talk[leg], others), 3),
            interruptions=cut_in[leg],
        )
    span = anyone[-1][1] - anyone[0][0] if anyone else 0.0
    return CallStats(
        duration_s=round(duration, 3),
        talk_s=round(all_talk, 3),
        non_talk_s=round(span - all_talk, 3),
        longest_silence_s=round(max(gaps, default=0.0), 3),
        talk_over_count=len(over),
        talk_over_s=round(_total(over), 3),
        legs=stats,
    )


CALL_FACTS = (
    "duration_s", "talk_s", "non_talk_s", "longest_silence_s", "talk_over_count", "talk_over_s",
)  # fmt: skip
LEG_FACTS = (
    "talk_s", "talk_ratio", "words", "words_per_minute", "longest_monologue_s", "interruptions",
)  # fmt: skip
# Every name a search may filter on: the call's figures, and each leg's as `leg.name`.
FACT_NAMES = frozenset(
    [*CALL_FACTS, *(f"{leg}.{name}" for leg in get_args(Leg) for name in LEG_FACTS)]
)


def facts(stats: CallStats) -> dict[str, float]:
    """The statistics as flat named numbers, what the index stores for search filters
    (`longest_silence_s`, `agent.talk_ratio` ...)."""
    out = {name: float(getattr(stats, name)) for name in CALL_FACTS}
    for leg, figures in stats.legs.items():
        out.update({f"{leg}.{name}": float(getattr(figures, name)) for name in LEG_FACTS})
    return out
