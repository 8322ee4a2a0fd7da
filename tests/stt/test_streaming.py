"""The streaming recogniser: local agreement, partials before finals, gaps and silence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.events import Word
from pipeline.media import SAMPLE_RATE
from pipeline.media.resample import float_to_int16
from sim import corpus
from stt.live_decoder import ShortWindowDecoder, streaming_options, trim_repetition
from stt.normalise import wer
from stt.streaming import (
    Hypothesis,
    StreamingOptions,
    StreamingRecognizer,
    align,
    common_prefix,
)
from stt.transcriber import Segment

STEP = 2560  # 160 ms at 16 kHz


def _w(word: str, start: float, end: float) -> Word:
    return Word(word=word, start=start, end=end, probability=0.9)


def test_align_and_agreement_helpers() -> None:
    confirmed = [_w("Hello,", 0.0, 0.3), _w("I", 0.4, 0.5)]
    same = [_w("hello", 0.0, 0.3), _w("I", 0.4, 0.5), _w("would", 0.5, 0.7)]
    assert align(confirmed, same) == [same[2]]
    # Whisper rewrote a confirmed word: what follows the confirmed time is kept, overlap cut
    rewritten = [_w("Yellow", 0.0, 0.3), _w("I", 0.4, 0.5), _w("would", 0.55, 0.7)]
    assert [w.word for w in align(confirmed, rewritten)] == ["would"]
    assert common_prefix(same, [_w("Hello", 0, 1), _w("i", 1, 2), _w("could", 2, 3)]) == 2
    words = [_w(x, i, i + 1) for i, x in enumerate("can you give me can you give me".split())]
    assert [w.word for w in trim_repetition(words)] == ["can", "you", "give", "me"]
    no_repeat = [_w(x, i, i + 1) for i, x in enumerate("thank you thank you so much".split())]
    assert trim_repetition(no_repeat) == no_repeat


class FlickeringDecoder:
    """A scripted decoder for the agreement logic: the words said so far, with a word cut
    by the clip's end changed on every other pass (as Whisper guesses at a cut word)."""

    def __init__(self, words: list[str], seconds_per_word: float, lead_s: float) -> None:
        self.words = words
        self.spw = seconds_per_word
        self.lead = lead_s
        self.passes = 0

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        out: list[Segment | None] = []
        for clip in clips:
            self.passes += 1
            dur = len(clip) / SAMPLE_RATE
            said = [
                _w(w, self.lead + i * self.spw, self.lead + (i + 1) * self.spw)
                for i, w in enumerate(self.words)
                if self.lead + (i + 0.5) * self.spw < dur
            ]
            if said and said[-1].end > dur and self.passes % 2:
                last = said[-1]
                said[-1] = _w(last.word[::-1] + "x", last.start, last.end)
            out.append(
                Segment(
                    start=0,
                    end=dur,
                    text=" ".join(w.word for w in said),
                    words=tuple(said),
                    avg_logprob=-0.2,
                    no_speech_prob=0.01,
                )
                if said
                else None
            )
        return out


def _stream(r: StreamingRecognizer, pcm: np.ndarray, decoder: Any) -> list[Hypothesis]:
    out: list[Hypothesis] = []
    for i in range(0, len(pcm), STEP):
        r.insert_audio_chunk(pcm[i : i + STEP])
        out.extend(r.process_iter(decoder, "en"))
    out.extend(r.finish(decoder, "en"))
    return out


def _long_sentence(speak: Callable[..., np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A long sentence with no pause in it, and the same as int16 between 1 s silences."""
    speech = speak(
        "I have been waiting for my refund since the beginning of last month "
        "and nobody answers my emails at all."
    )
    pause = np.zeros(SAMPLE_RATE, np.float32)
    return speech, float_to_int16(np.concatenate([pause, speech, pause]))


def test_confirmed_prefix_is_never_retracted(speak: Callable[..., np.ndarray]) -> None:
    speech, pcm = _long_sentence(speak)
    words = [f"w{i}" for i in range(20)]
    decoder = FlickeringDecoder(words, 0.9 * len(speech) / SAMPLE_RATE / 20, 0.1)
    hyps = _stream(StreamingRecognizer(StreamingOptions(partial_interval_s=0.5)), pcm, decoder)
    partials = [h for h in hyps if not h.final]
    finals = [h for h in hyps if h.final]
    assert len(finals) == 1 and len(partials) >= 3
    assert hyps[-1] is finals[0]
    previous: list[str] = []
    for h in partials:
        now = [w.word for w in h.words]
        assert now[: len(previous)] == previous, (previous, now)  # never retracted
        assert not any(w.endswith("x") for w in now)
        previous = now
    assert [h.revision for h in hyps] == list(range(1, len(hyps) + 1))
    assert [w.word for w in finals[0].words] == words


def test_tentative_partials_show_every_new_reading(speak: Callable[..., np.ndarray]) -> None:
    speech, pcm = _long_sentence(speak)
    words = [f"w{i}" for i in range(20)]
    spw = 0.9 * len(speech) / SAMPLE_RATE / 20

    def partials(tentative: bool) -> list[Hypothesis]:
        r = StreamingRecognizer(StreamingOptions(tentative_partials=tentative))
        hyps = _stream(r, pcm, FlickeringDecoder(words, spw, 0.1))
        assert hyps[-1].final and [w.word for w in hyps[-1].words] == words
        assert [h.revision for h in hyps] == list(range(1, len(hyps) + 1))
        return [h for h in hyps if not h.final]

    stable, live = partials(False), partials(True)
    assert not any(h.tentative for h in stable)
    # every pass that heard something new is shown; the stable words are the same ones, in
    # the same order, and the first one comes no later
    assert len(live) > len(stable) and any(h.tentative for h in live)
    seen: list[tuple[str, ...]] = []
    for h in live:
        now = tuple(w.word for w in h.words)
        assert not seen or now[: len(seen[-1])] == seen[-1]
        if not seen or now != seen[-1]:
            seen.append(now)
    assert [s for s in seen if s] == [tuple(w.word for w in h.words) for h in stable]
    first_live = next(h for h in live if h.words or h.tentative)
    assert first_live.end <= stable[0].end
    shown = [(len(h.words), tuple(w.word for w in h.tentative)) for h in live]
    assert len(shown) == len(set(shown))  # a partial only when something changed


def test_passes_come_at_least_every_second_of_speech(speak: Callable[..., np.ndarray]) -> None:
    # The live worker's default cadence, in the ingest's 160 ms chunks: while a leg speaks,
    # a pass (so a partial, when it confirms words) comes at least every second of audio.
    speech, pcm = _long_sentence(speak)
    options = StreamingOptions(partial_interval_s=Settings().live.partial_interval_s)
    r = StreamingRecognizer(options)
    inner = FlickeringDecoder([f"w{i}" for i in range(20)], 0.05 * len(speech) / SAMPLE_RATE, 0.1)
    at: list[int] = []

    class Recording:
        def transcribe_clips(
            self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
        ) -> list[Segment | None]:
            at.extend([r.position] * len(clips))
            return inner.transcribe_clips(clips, language)

    hyps = _stream(r, pcm, Recording())
    assert len([h for h in hyps if h.final]) == 1
    onset = SAMPLE_RATE + int(np.argmax(np.abs(speech) > 0.02))
    end = len(pcm) - SAMPLE_RATE
    spoken = [onset, *(p for p in at if p < end), end]
    assert len(spoken) >= 7
    assert max(np.diff(spoken)) <= SAMPLE_RATE, np.diff(spoken) / SAMPLE_RATE


def test_the_final_is_the_last_pass_reading(speak: Callable[..., np.ndarray]) -> None:
    # Greedy partial passes confirm a misheard word; the beam-search pass over the whole
    # utterance hears it right, and the final is that reading.
    speech = speak("I would like to cancel my contract.")
    pause = np.zeros(SAMPLE_RATE, np.float32)
    pcm = float_to_int16(np.concatenate([pause, speech, pause, speech, pause]))
    spw = 0.9 * len(speech) / SAMPLE_RATE / 8
    misheard = FlickeringDecoder("I would like to can't for my contract.".split(), spw, 0.1)
    right = FlickeringDecoder("I would like to cancel my contract.".split(), spw, 0.1)
    r = StreamingRecognizer(StreamingOptions(partial_interval_s=0.3))
    hyps: list[Hypothesis] = []
    for i in range(0, len(pcm), STEP):
        r.insert_audio_chunk(pcm[i : i + STEP])
        hyps.extend(r.take_ready())
        for req in r.requests():
            whole = req.urgent and len(req.audio) >= len(speech)
            decoder = right if whole else misheard
            hyps.extend(r.apply(req, decoder.transcribe_clips([req.audio], "en")[0]))
    hyps.extend(r.finish(right, "en"))
    partials = [h for h in hyps if not h.final]
    finals = [h for h in hyps if h.final]
    assert any("can't" in h.text for h in partials)
    assert [f.text for f in finals] == ["I would like to cancel my contract."] * 2


def test_a_final_reads_the_same_clip_however_the_audio_came_in_chunks(
    speak: Callable[..., np.ndarray],
) -> None:
    # Over line noise: the pass run in the hangover is due at the first chunk 90 ms into the
    # silence, so it had heard more or less of the noise after it, by up to a chunk (RTP
    # comes in 20 ms, the ingest's chunks are 160 ms). What the final reads is the same.
    speech = speak("I would like to cancel my contract.")
    quiet = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([quiet, speech, quiet, quiet])
    audio += np.random.default_rng(7).normal(0, 0.003, len(audio)).astype(np.float32)
    pcm = float_to_int16(audio)
    read: list[np.ndarray] = []
    for step in (320, 1280, 2560):
        r = StreamingRecognizer(StreamingOptions())
        decoder = FlickeringDecoder(["I", "would", "like"], 0.3, 0.1)
        finals, last = [], np.zeros(0, np.float32)  # last: the clip of the last urgent pass
        for i in range(0, len(pcm), step):
            r.insert_audio_chunk(pcm[i : i + step])
            finals += [last for h in r.take_ready() if h.final]
            for req in r.requests():
                hyps = r.apply(req, decoder.transcribe_clips([req.audio], "en")[0])
                last = req.audio if req.urgent else last
                finals += [last for h in hyps if h.final]
        assert len(finals) == 1, step
        read.append(finals[0])
    assert all(np.array_equal(read[0], clip) for clip in read[1:])


def test_real_speech_partials_then_finals(
    speak: Callable[..., np.ndarray], whisper_model: Any
) -> None:
    lines = [
        "Good morning, thank you for calling. How can I help you today?",
        "Let me check that for you, it will only take a moment.",
    ]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([pause, speak(lines[0]), pause, speak(lines[1]), pause])
    decoder = ShortWindowDecoder(whisper_model)
    hyps = _stream(StreamingRecognizer(), float_to_int16(audio), decoder)
    finals = [h for h in hyps if h.final]
    assert len(finals) == 2
    for line, f in zip(lines, finals, strict=True):
        assert wer(line, f.text) < 0.2, f.text
        mine = [h for h in hyps if h.start == f.start]
        assert len(mine) >= 2 and mine[-1] is f and not any(h.final for h in mine[:-1])
    assert finals[0].end <= finals[1].start
    first_line_end = (SAMPLE_RATE + len(speak(lines[0]))) / SAMPLE_RATE
    assert abs(finals[0].words[-1].end - first_line_end) < 0.5


def test_silence_and_gaps_cost_no_decoding(speak: Callable[..., np.ndarray]) -> None:
    r = StreamingRecognizer()
    rng = np.random.default_rng(3)
    for _ in range(int(120 / 0.16)):  # two minutes of line noise
        r.insert_audio_chunk(float_to_int16(rng.normal(0, 0.003, STEP).astype(np.float32)))
        assert r.requests() == []
    assert len(r._audio) < 3 * SAMPLE_RATE  # what is kept while quiet stays bounded
    # ten minutes with no packets at all, then speech: positions stay call-relative
    r.skip_to(r.position + 600 * SAMPLE_RATE)
    before = r.position
    r.insert_audio_chunk(
        float_to_int16(np.concatenate([speak("Hello there."), np.zeros(SAMPLE_RATE, np.float32)]))
    )
    r.close()
    reqs = r.requests()
    assert len(reqs) == 1 and reqs[0].final
    assert before - SAMPLE_RATE // 4 <= reqs[0].start < before + SAMPLE_RATE // 2


class PunctuatingDecoder:
    """A scripted decoder: one word per 0.4 s of clip, the text closed by `end`."""

    def __init__(self, end: str) -> None:
        self.end = end

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        out: list[Segment | None] = []
        for clip in clips:
            dur = len(clip) / SAMPLE_RATE
            words = tuple(
                _w(f"w{i}", i * 0.4, i * 0.4 + 0.3) for i in range(max(1, int(dur / 0.4)))
            )
            text = " ".join(w.word for w in words) + self.end
            out.append(Segment(0.0, dur, text, words, -0.2, 0.01, "en"))
        return out


def _two_sentences(speak: Callable[..., np.ndarray]) -> tuple[np.ndarray, int]:
    """Two sentences 300 ms apart (less than the hangover); the sample where the first ends."""
    first = speak("Thank you for waiting.")
    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate(
        [pause, first, pause[: int(0.3 * SAMPLE_RATE)], speak("I can see two charges."), pause]
    )
    return float_to_int16(audio), SAMPLE_RATE + len(first)


def _finals_with_position(
    options: StreamingOptions, pcm: np.ndarray, decoder: Any
) -> list[tuple[int, Hypothesis]]:
    r = StreamingRecognizer(options)
    out: list[tuple[int, Hypothesis]] = []
    for i in range(0, len(pcm), STEP):
        r.insert_audio_chunk(pcm[i : i + STEP])
        out.extend((r.position, h) for h in r.process_iter(decoder, "en") if h.final)
    out.extend((r.position, h) for h in r.finish(decoder, "en") if h.final)
    return out


def test_early_final_at_a_sentence_end(speak: Callable[..., np.ndarray]) -> None:
    pcm, first_end = _two_sentences(speak)
    options = StreamingOptions(hangover_ms=500, early_final=True)
    finals = _finals_with_position(options, pcm, PunctuatingDecoder("."))
    # the 300 ms pause ends the first sentence: its final comes before the hangover would
    assert len(finals) == 2
    (pos1, f1), (_, f2) = finals
    assert pos1 < first_end + int(0.45 * SAMPLE_RATE)
    assert f1.end <= f2.start and f1.text.endswith(".")
    # the second sentence, which resumed within the hangover, starts where its speech does
    assert abs(f2.start - (first_end + int(0.3 * SAMPLE_RATE))) < 0.3 * SAMPLE_RATE
    # without early finals the same pause is inside one utterance
    late = _finals_with_position(StreamingOptions(hangover_ms=500), pcm, PunctuatingDecoder("."))
    assert len(late) == 1


def test_no_early_final_without_a_sentence_end(speak: Callable[..., np.ndarray]) -> None:
    pcm, first_end = _two_sentences(speak)
    options = StreamingOptions(hangover_ms=500, early_final=True)
    for end in (",", "...", ""):
        finals = _finals_with_position(options, pcm, PunctuatingDecoder(end))
        assert len(finals) == 1, end
        assert finals[0][0] > first_end + SAMPLE_RATE


def test_a_pre_roll_reaching_into_the_last_utterance_does_not_say_its_tail_again(
    speak: Callable[..., np.ndarray],
) -> None:
    # Sentences 0.7 s apart (Piper starts and ends each with 0.3 s of quiet): the second
    # utterance's pre-roll (the live default, 800 ms) starts before the first one's clip
    # ends, so a decoder hears the first one's last word again at the start of the second
    # clip. It is said once, in the first final; the second one's own first word, the same
    # word said again, is kept.
    texts = ("I would like to cancel my contract.", "Contract number five, please.")
    first, second = (speak(t) for t in texts)
    lead, gap = SAMPLE_RATE, int(0.4 * SAMPLE_RATE)
    audio = np.concatenate(
        [np.zeros(lead, np.float32), first, np.zeros(gap, np.float32), second]
        + [np.zeros(SAMPLE_RATE, np.float32)]
    )
    script: list[Word] = []  # each sentence's words spread over its voiced span
    for text, at, speech in zip(
        texts, (lead, lead + len(first) + gap), (first, second), strict=True
    ):
        on, off = corpus.voiced_span(speech)
        per = (off - on) / SAMPLE_RATE / len(text.split())
        t0 = (at + on) / SAMPLE_RATE
        script += [_w(w, t0 + i * per, t0 + (i + 1) * per) for i, w in enumerate(text.split())]

    def decode(start: int, clip: np.ndarray) -> Segment | None:
        # every word the clip holds any part of, timed from the clip's start
        t0, t1 = start / SAMPLE_RATE, (start + len(clip)) / SAMPLE_RATE
        heard = [
            _w(w.word, w.start - t0, w.end - t0) for w in script if w.end > t0 and w.start < t1
        ]
        if not heard:
            return None
        text = " ".join(w.word for w in heard)
        return Segment(heard[0].start, heard[-1].end, text, tuple(heard), -0.2, 0.01)

    r = StreamingRecognizer(streaming_options(Settings()))
    pcm = float_to_int16(audio)
    hyps: list[Hypothesis] = []
    for i in range(0, len(pcm), STEP):
        r.insert_audio_chunk(pcm[i : i + STEP])
        hyps += r.take_ready()
        for req in r.requests():
            hyps += r.apply(req, decode(req.start, req.audio))
    r.close()
    for req in r.requests():
        hyps += r.apply(req, decode(req.start, req.audio))
    finals = [h for h in hyps if h.final]
    assert len(finals) == 2
    # the premise: the second clip began inside the first one
    assert finals[1].start < finals[0].end
    assert [f.text for f in finals] == list(texts)
    # nor does a partial of the second show it
    assert all(
        h.words[0].word == "Contract" for h in hyps if h.start == finals[1].start and h.words
    )
