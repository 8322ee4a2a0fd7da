"""Call statistics on calls whose timing the test builds (turns, overlaps, silences known
to the millisecond), and in the transcript.json a finished call gets."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.catalog import new_manifest, save_manifest
from pipeline.events import Utterance, Word
from pipeline.services import Services
from recordings.call_stats import call_statistics
from recordings.transcripts import JSON_NAME, finish_transcript, to_document


def _u(leg: str, *words: tuple[float, float]) -> Utterance:
    """An utterance of `leg` made of words at these times."""
    return Utterance(
        tenant="acme",
        call_id="c-1",
        leg=leg,  # type: ignore[arg-type]
        utterance_id=f"u-{leg}-{words[0][0]}",
        start=words[0][0],
        end=words[-1][1],
        text=" ".join("w" for _ in words),
        words=tuple(Word(word="w", start=s, end=e, probability=0.9) for s, e in words),
    )


# 0.5 s of ringing; the agent talks 0.5-5.0 (words with 0.2 s pauses: one stretch); the
# customer cuts in at 4.0 and talks to 9.0 (1.0 s over the agent); 12.0 s of silence;
# the agent 21.0-25.5 and 27.0-30.0, 1.5 s apart (one monologue of 9 s); a 0.1 s "mm"
# from the customer at 28.0 (a backchannel: talk, but too short to be talking over).
CALL = [
    _u("agent", (0.5, 1.5), (1.7, 3.0), (3.2, 5.0)),
    _u("customer", (4.0, 6.0), (6.2, 9.0)),
    _u("agent", (21.0, 24.0), (24.2, 25.5)),
    _u("customer", (28.0, 28.1)),
    _u("agent", (27.0, 30.0)),
]


def test_statistics_of_a_call_built_to_the_millisecond() -> None:
    s = call_statistics(CALL, duration=31.0)
    agent, customer = s.legs["agent"], s.legs["customer"]
    # agent: 0.5-5.0, 21.0-25.5, 27.0-30.0 (the 1.5 s pause is silence, not talk)
    assert agent.talk_s == 4.5 + 4.5 + 3.0
    assert customer.talk_s == 5.0 + 0.1
    # anyone: 0.5-9.0, 21.0-25.5, 27.0-30.0
    assert s.talk_s == 8.5 + 4.5 + 3.0
    assert s.non_talk_s == (30.0 - 0.5) - s.talk_s  # 12 s and 1.5 s of silence
    assert s.longest_silence_s == 12.0
    # talking over: 4.0-5.0 only (the customer's 0.1 s "mm" is under MIN_OVERLAP_S)
    assert (s.talk_over_count, s.talk_over_s) == (1, 1.0)
    assert (customer.interruptions, agent.interruptions) == (1, 0)
    assert agent.talk_ratio == round(12.0 / 16.0, 3) and customer.talk_ratio == round(5.1 / 16, 3)
    # the agent's 21.0-30.0 is one monologue of 9 s: the 1.5 s pause, the customer silent,
    # joins it; but the customer's "mm" at 28.0 is inside the agent's talk, not in a pause
    assert agent.longest_monologue_s == 9.0
    assert customer.longest_monologue_s == 5.0
    assert agent.words == 6 and agent.words_per_minute == round(6 / 12.0 * 60, 1)
    assert s.duration_s == 31.0


def test_a_word_of_the_other_leg_in_a_pause_breaks_the_monologue() -> None:
    call = [_u("agent", (0.0, 4.0)), _u("customer", (4.5, 4.9)), _u("agent", (5.5, 9.0))]
    s = call_statistics(call, duration=10.0)
    assert s.legs["agent"].longest_monologue_s == 4.0
    assert s.talk_over_count == 0 and s.longest_silence_s == 0.6


def test_utterances_without_words_count_by_their_span_and_an_empty_call_is_zeros() -> None:
    bare = Utterance(
        tenant="acme", call_id="c", leg="mono", utterance_id="u", start=2.0, end=7.5, text="a b c"
    )
    s = call_statistics([bare], duration=8.0)
    assert s.legs["mono"].talk_s == 5.5 and s.legs["mono"].words == 3
    empty = call_statistics([], duration=5.0)
    assert (empty.talk_s, empty.longest_silence_s, empty.legs) == (0.0, 0.0, {})


def test_a_finished_call_stores_its_statistics(services: Services) -> None:
    """Both workers end a call through finish_transcript: its transcript.json holds the
    statistics; the live view's document (no duration yet) does not."""
    started = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    manifest = new_manifest("acme", "c-1", started)
    save_manifest(services.store, manifest)
    finish_transcript(services.store, manifest, CALL, {}, "batch", 31.0, "en")
    doc = json.loads(services.store.get(manifest.prefix + JSON_NAME))
    assert doc["statistics"] == call_statistics(CALL, 31.0).model_dump()
    assert doc["statistics"]["longest_silence_s"] == 12.0
    assert "statistics" not in to_document("acme", "c-1", CALL, {}, "live")
