"""Streaming recognition of one leg: endpointing, local agreement, partials and finals.

Shaped as whisper_streaming's online processor: `insert_audio_chunk` feeds audio,
`process_iter` decodes what is due and returns what changed, `finish` closes the stream.
Within an utterance every pass re-decodes it from its start; words two consecutive passes
agree on are confirmed and never retracted, so partials (the confirmed words) do not
flicker. The final is the last pass's own reading of the whole utterance (beam search in
the live worker), so it may correct a word the greedy partial passes confirmed. Decoding is
split out (`requests` / `apply`) so the live worker can batch the passes of many legs and
calls into one Whisper call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from pipeline.events import Word
from pipeline.media import SAMPLE_RATE
from stt.transcriber import Segment
from stt.vad import Endpointer, SpeechEnded, SpeechStarted, VadOptions, VadState
from stt.words import join_words

_NORM = re.compile(r"[^\w']+")
# Words Whisper rewrote inside the confirmed prefix are matched by time, with this slack.
_TIME_SLACK_S = 0.05
_MAX_NGRAM = 5
# What a sentence ends with; "..." is Whisper's mark of speech trailing off, not an end.
_SENTENCE_END = re.compile(r"(?<!\.\.)[.?!。？！]['\"”)]*$")


class ClipDecoder(Protocol):
    """What decodes clips: `Transcriber` or `ShortWindowDecoder`."""

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]: ...


@dataclass(frozen=True)
class StreamingOptions:
    """Endpointing and partial cadence of a live leg; names carry their units."""

    vad_model: Literal["silero", "webrtc"] = "silero"
    vad_aggressiveness: int = 2  # webrtcvad
    hangover_ms: int = 500  # silence that ends an utterance
    min_speech_ms: int = 200
    speech_pad_ms: int = 200
    onset_pad_ms: int = 200  # audio kept before an utterance's first speech frame
    max_utterance_s: float = 15.0
    partial_interval_s: float = 1.0  # the most speech between two passes while speaking
    first_pass_s: float = 0.5  # speech (from the utterance start) before the first pass
    keep_before_ms: int = 1000  # audio kept while quiet, for the padding before an onset
    # Silence after which the pass that will likely be the final is decoded (the clip up to
    # the last voiced frame plus `speech_pad_ms`, the part not yet heard as silence).
    final_pass_silence_ms: int = 90
    # End an utterance after `speech_pad_ms` of silence when the pass decoded in it ends a
    # sentence, without waiting for the rest of the hangover (semantic endpointing).
    early_final: bool = False
    noise_margin_db: float | None = None  # see VadOptions
    # A partial on every pass that hears something new: the confirmed words, then the rest
    # of the pass's reading as `tentative` (may change); off, partials only when words are
    # confirmed.
    tentative_partials: bool = False

    def vad(self) -> VadOptions:
        """The Endpointer's options."""
        return VadOptions(
            model=self.vad_model,
            aggressiveness=self.vad_aggressiveness,
            frame_ms=30,
            min_speech_duration_ms=self.min_speech_ms,
            min_silence_duration_ms=self.hangover_ms,
            speech_pad_ms=self.speech_pad_ms,
            onset_pad_ms=self.onset_pad_ms,
            max_speech_duration_s=self.max_utterance_s,
            noise_margin_db=self.noise_margin_db,
        )


@dataclass(frozen=True)
class Hypothesis:
    """What the leg said: a partial (the confirmed words so far) or the final.

    `start`/`end` are samples (16 kHz) from the stream origin; word times are seconds.
    """

    start: int
    end: int
    words: tuple[Word, ...]
    text: str
    final: bool
    revision: int
    language: str | None = None
    tentative: tuple[Word, ...] = ()  # partials: words after `words`, not yet agreed on


@dataclass
class _Utterance:
    start: int
    end: int | None = None
    confirmed: list[Word] = field(default_factory=list)
    tentative: list[Word] = field(default_factory=list)
    revision: int = 0
    shown: tuple[int, str] = (0, "")  # what the last partial showed: confirmed count, rest
    next_pass: int = 0
    last_end: int = -1  # end of the clip the last pass decoded
    last_text: str = ""
    last_words: list[Word] = field(default_factory=list)
    sentence_end: bool = False  # the last pass was decoded in a pause and ends a sentence
    last_language: str | None = None
    audio: np.ndarray | None = None  # the whole clip, once ended and waiting for its final
    done: bool = False  # its final was given
    # The leg's previous utterance, when this one's pre-roll reaches back into it: the
    # words both clips hold are said once, in that one.
    before: _Utterance | None = None


@dataclass(frozen=True)
class DecodeRequest:
    """One clip for Whisper: a partial pass or the final pass of an utterance."""

    utterance: _Utterance
    start: int
    end: int
    audio: np.ndarray  # float32 16 kHz
    final: bool
    urgent: bool = False  # a final, or the pass that will likely become one: decode first


def norm_word(word: str) -> str:
    """A word as compared between passes: lower case, no punctuation."""
    return _NORM.sub("", word.lower())


def align(confirmed: Sequence[Word], words: Sequence[Word]) -> list[Word]:
    """The words of a new pass that come after the confirmed ones.

    When Whisper rewrote a confirmed word, they are those after the last confirmed word's
    time, minus an n-gram overlap with the confirmed tail (as whisper_streaming does).
    """
    n = len(confirmed)
    if [norm_word(w.word) for w in words[:n]] == [norm_word(w.word) for w in confirmed]:
        return list(words[n:])
    t = confirmed[-1].end - _TIME_SLACK_S
    rest = [w for w in words if (w.start + w.end) / 2 >= t]
    return rest[tail_overlap(confirmed, rest, _MAX_NGRAM) :]


def tail_overlap(tail: Sequence[Word], head: Sequence[Word], most: int) -> int:
    """The most words (up to `most`) that `head` starts with and `tail` ends with."""
    for k in range(min(most, len(tail), len(head)), 0, -1):
        if common_prefix(head[:k], tail[-k:]) == k:
            return k
    return 0


def after_seam(before: _Utterance, words: list[Word]) -> list[Word]:
    """The words of a clip whose pre-roll overlaps the utterance `before`, less those that
    utterance already said: the leading words heard before its clip ended that repeat its
    last words. Both, because Whisper stretches a clip's first word back over the quiet
    before it (a word of its own would go by time alone) and a word said again after a
    short pause ("No. No.") is the speaker's (it would go by text alone)."""
    said = before.last_words or [*before.confirmed, *before.tentative]
    if before.end is None or not said:
        return words
    seam = before.end / SAMPLE_RATE
    early = 0
    while early < len(words) and (words[early].start + words[early].end) / 2 < seam:
        early += 1
    return words[tail_overlap(said, words, early) :]


def common_prefix(a: Sequence[Word], b: Sequence[Word]) -> int:
    """How many leading words two passes agree on."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if norm_word(x.word) != norm_word(y.word):
            break
        n += 1
    return n


def ends_sentence(text: str) -> bool:
    """Whether Whisper closed the text as a sentence (a full stop, question or exclamation)."""
    return bool(_SENTENCE_END.search(text.strip()))


class StreamingRecognizer:
    """One leg: 16 kHz int16 audio in; partial and final hypotheses out."""

    def __init__(self, options: StreamingOptions | None = None, origin: int = 0) -> None:
        self.options = o = options or StreamingOptions()
        self._ep = Endpointer(o.vad())
        self._frame = self._ep.frame
        self.origin = origin  # absolute sample of the endpointer's position 0
        self._pending = np.zeros(0, dtype=np.int16)  # less than one frame, not yet fed
        self._audio = np.zeros(0, dtype=np.int16)
        self._audio_start = origin
        self._current: _Utterance | None = None
        self._previous: _Utterance | None = None
        self._split_end = -1  # end of an utterance closed early while the endpointer stops
        self._ending: list[_Utterance] = []
        self._ready: list[Hypothesis] = []
        self._last_voiced = origin
        self._pad = SAMPLE_RATE * o.speech_pad_ms // 1000
        self._onset_pad = SAMPLE_RATE * o.onset_pad_ms // 1000
        self._interval = int(o.partial_interval_s * SAMPLE_RATE)
        self._chunk = 0  # size of the last chunk inserted: the next one likely matches
        self._first = int(o.first_pass_s * SAMPLE_RATE)
        self._keep = SAMPLE_RATE * max(o.keep_before_ms, o.onset_pad_ms) // 1000
        self._spec_silence = SAMPLE_RATE * min(o.final_pass_silence_ms, o.speech_pad_ms) // 1000

    # -- audio in ------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Absolute sample after the last one inserted."""
        return self._audio_start + len(self._audio)

    @property
    def busy(self) -> bool:
        """Inside an utterance, or an utterance waits for its final decode."""
        return self._current is not None or bool(self._ending)

    @property
    def _final_pass_end(self) -> int:
        """Where the utterance in progress ends if no speech follows: last voiced + pad."""
        return self._last_voiced + self._pad

    @property
    def final_pass_soon(self) -> bool:
        """Silence began after speech: the pass likely to be the final is due shortly."""
        cur = self._current
        return (
            cur is not None
            and self._ep.state is VadState.STOPPING
            and cur.last_end != self._final_pass_end
        )

    def insert_audio_chunk(self, pcm: np.ndarray) -> None:
        """Append contiguous 16 kHz int16 audio."""
        pcm = np.asarray(pcm, dtype=np.int16)
        self._chunk = len(pcm)
        self._audio = np.concatenate([self._audio, pcm])
        buf = np.concatenate([self._pending, pcm])
        n = len(buf) // self._frame
        for i in range(n):
            self._step(buf[i * self._frame : (i + 1) * self._frame])
        self._pending = buf[n * self._frame :]
        self._trim()

    def skip_to(self, position: int) -> None:
        """Jump over a stretch with no audio (a long gap): an open utterance is closed with
        silence first, then the jump costs nothing."""
        gap = position - self.position
        if gap <= 0:
            return
        quiet = self._ep.state is VadState.QUIET
        fill = 0 if quiet else self._silence_needed() + self._frame
        fill += (-(len(self._pending) + fill)) % self._frame  # end on a frame boundary
        self.insert_audio_chunk(np.zeros(min(fill, gap), dtype=np.int16))
        rest = position - self.position
        if rest <= 0:
            return
        if self._ep.state is not VadState.QUIET or len(self._pending):
            self.insert_audio_chunk(np.zeros(rest, dtype=np.int16))
            return
        self.origin += rest
        self._audio = np.zeros(0, dtype=np.int16)
        self._audio_start = position

    def _silence_needed(self) -> int:
        return SAMPLE_RATE * self.options.hangover_ms // 1000 + self._pad

    def _step(self, frame: np.ndarray) -> None:
        for ev in self._ep.feed(frame):
            if isinstance(ev, SpeechStarted):
                self._begin(self.origin + ev.start)
            elif isinstance(ev, SpeechEnded):
                if self._current is not None:
                    self._end_current(self.origin + ev.end)
                self._split_end = -1
        if self._ep.state is VadState.SPEAKING:
            if self._current is None and self._split_end >= 0:
                # speech resumed after an utterance closed early: a new one starts here
                onset = self.origin + self._ep.position - self._frame - self._onset_pad
                self._begin(max(self._split_end, onset))
                self._split_end = -1
            self._last_voiced = self.origin + self._ep.position
        elif self._current is not None and self._closes_early(self._current):
            self._ready.extend(self._close_early(self._current))

    def _begin(self, start: int) -> None:
        prev = self._previous
        before = prev if prev is not None and prev.end is not None and prev.end > start else None
        self._current = _Utterance(start=start, next_pass=start + self._first, before=before)

    def _end_current(self, end: int) -> None:
        utt, self._current = self._current, None
        if utt is None:
            return
        utt.end = end
        self._previous = utt
        if utt.last_end == end:
            # the pass run during the trailing silence decoded exactly this clip
            self._ready.extend(self._final_from_last(utt))
        else:
            utt.audio = self._final_clip(utt.start, end)
            self._ending.append(utt)

    def _trim(self) -> None:
        keep_from = self.position - self._keep
        if self._current is not None:
            keep_from = min(keep_from, self._current.start)
        drop = keep_from - self._audio_start
        if drop > SAMPLE_RATE:  # trim in steps, not on every chunk
            self._audio = self._audio[drop:]
            self._audio_start = keep_from

    def _clip(self, start: int, end: int) -> np.ndarray:
        a = self._audio[max(0, start - self._audio_start) : max(0, end - self._audio_start)]
        return a.astype(np.float32) / 32768.0

    def _final_clip(self, start: int, end: int) -> np.ndarray:
        """The clip a final reads: as heard up to `_spec_silence` after the last voiced
        frame, digital silence after it. The pass run in the hangover is sure to have heard
        that much; how much more depended on the chunk size and on when the pass ran, and
        Whisper can read a clip differently for a few more ms of line noise. So the final
        reads the same clip whether it is that pass or its own decode, however the audio
        came in."""
        heard = min(end, max(start, self._last_voiced + self._spec_silence))
        clip = self._clip(start, heard)
        return np.pad(clip, (0, end - start - len(clip)))

    # -- decoding ------------------------------------------------------------------------
    def requests(self) -> list[DecodeRequest]:
        """Clips due for decoding now: finals first, then at most one partial pass."""
        out = [
            DecodeRequest(u, u.start, u.end, u.audio, True, True)
            for u in self._ending
            if u.end is not None and u.audio is not None
        ]
        cur = self._current
        if cur is None:
            return out
        pos = self.position
        spec_end = self._final_pass_end
        if (
            self._ep.state is VadState.STOPPING
            and pos >= self._last_voiced + self._spec_silence
            and spec_end > cur.start
            and cur.last_end != spec_end
        ):
            # Decode while the hangover runs: if no speech follows, this is the final. Past
            # the first `_spec_silence` of the hangover the clip is zeros, heard or not (the
            # endpointer says silence so far; `_final_clip`).
            clip = self._final_clip(cur.start, spec_end)
            out.append(DecodeRequest(cur, cur.start, spec_end, clip, False, True))
        elif self._ep.state is VadState.SPEAKING and pos + self._chunk > cur.next_pass:
            # due now if waiting for the next chunk would overshoot the pass's time: the
            # interval is the most speech between two passes, whatever the chunk size
            out.append(DecodeRequest(cur, cur.start, pos, self._clip(cur.start, pos), False))
        return out

    def owns(self, request: DecodeRequest) -> bool:
        """Whether a request is of this recogniser's utterance in progress or ending (not
        of one already final, nor of a recogniser this leg had before a handover)."""
        utt = request.utterance
        return not utt.done and (utt is self._current or utt in self._ending)

    def apply(self, request: DecodeRequest, segment: Segment | None) -> list[Hypothesis]:
        """Take a decoded clip into account; returns the hypotheses it completes."""
        utt = request.utterance
        if utt.done:
            return []  # a pass decoded while the final was made (the worker's lanes)
        offset = request.start / SAMPLE_RATE
        words = (
            []
            if segment is None
            else [
                Word(
                    word=w.word,
                    start=round(w.start + offset, 3),
                    end=round(w.end + offset, 3),
                    probability=w.probability,
                )
                for w in segment.words
            ]
        )
        text = "" if segment is None else segment.text
        if utt.before is not None and words:
            kept = after_seam(utt.before, words)
            if len(kept) != len(words):
                words, text = kept, join_words(kept)
        language = None if segment is None else segment.language
        utt.last_text, utt.last_words = text, words
        utt.last_language = language or utt.last_language
        if request.final or (utt in self._ending and request.urgent and request.end == utt.end):
            # the final's own decode, or the pass run in the trailing silence came back
            # after the endpointer closed the utterance on exactly that clip
            if utt in self._ending:
                self._ending.remove(utt)
            return self._final_from_last(utt)
        rest = align(utt.confirmed, words)
        agreed = common_prefix(utt.tentative, rest)
        utt.last_end = request.end
        utt.next_pass = request.end + self._interval
        utt.confirmed.extend(rest[:agreed])
        utt.tentative = rest[agreed:]
        utt.sentence_end = request.urgent and ends_sentence(text)
        if self._closes_early(utt):
            return self._close_early(utt)
        if not utt.confirmed:
            # nothing shown yet: the agreeing second pass comes sooner
            utt.next_pass = request.end + self._interval // 2
        tentative = tuple(utt.tentative) if self.options.tentative_partials else ()
        shown = (len(utt.confirmed), join_words(tentative))
        if agreed == 0 and (not tentative or shown == utt.shown):
            return []
        utt.shown = shown
        utt.revision += 1
        end = request.start
        if utt.confirmed:
            end = max(end, int(round(utt.confirmed[-1].end * SAMPLE_RATE)))
        return [
            Hypothesis(
                utt.start,
                end,
                tuple(utt.confirmed),
                join_words(utt.confirmed),
                False,
                utt.revision,
                utt.last_language,
                tentative,
            )
        ]

    def _closes_early(self, utt: _Utterance) -> bool:
        """The pass decoded in the trailing silence ends a sentence, no speech came since,
        and the silence has lasted `speech_pad_ms`."""
        return (
            self.options.early_final
            and utt.sentence_end
            and utt is self._current
            and self._ep.state is VadState.STOPPING
            and utt.last_end == self._final_pass_end
            and self.origin + self._ep.position >= utt.last_end
        )

    def _close_early(self, utt: _Utterance) -> list[Hypothesis]:
        """End the utterance at its pass's end; speech resuming starts a new one."""
        utt.end = self._split_end = utt.last_end
        self._current = None
        return self._final_from_last(utt)

    def _final_from_last(self, utt: _Utterance) -> list[Hypothesis]:
        # The last pass decoded the whole utterance: its words, else (it heard no credible
        # speech) what the partials showed.
        utt.done = True
        utt.audio = None
        utt.before = None  # so that a long call does not hold a chain of its utterances
        words = utt.last_words or [*utt.confirmed, *utt.tentative]
        if not words:
            return []  # no credible speech; nothing was shown for it either
        text = utt.last_text if utt.last_words else join_words(words)
        utt.revision += 1
        end = utt.end if utt.end is not None else int(round(words[-1].end * SAMPLE_RATE))
        return [
            Hypothesis(utt.start, end, tuple(words), text, True, utt.revision, utt.last_language)
        ]

    def take_ready(self) -> list[Hypothesis]:
        """Finals completed without a decode of their own (since the last call)."""
        ready, self._ready = self._ready, []
        return ready

    # -- whisper_streaming's single-leg shape -------------------------------------------
    def process_iter(self, decoder: ClipDecoder, language: str | None = None) -> list[Hypothesis]:
        """Decode what is due with `decoder`; returns new partials and finals in order."""
        out = self.take_ready()
        reqs = self.requests()
        if reqs:
            segs = decoder.transcribe_clips([r.audio for r in reqs], language)
            for r, s in zip(reqs, segs, strict=True):
                out.extend(self.apply(r, s))
        return out

    def close(self) -> None:
        """End of stream: the utterance in progress ends where the audio ends."""
        if len(self._pending):
            pad = np.zeros(self._frame - len(self._pending), dtype=np.int16)
            self.insert_audio_chunk(pad)
        for ev in self._ep.flush():
            if isinstance(ev, SpeechEnded) and self._current is not None:
                self._end_current(self.origin + ev.end)

    def finish(self, decoder: ClipDecoder, language: str | None = None) -> list[Hypothesis]:
        """Close the stream and decode the last finals."""
        self.close()
        return self.process_iter(decoder, language)
