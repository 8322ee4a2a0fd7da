"""Whisper transcription of whole recordings: plain faster-whisper decoding, on speech only.

`Transcriber.transcribe` returns `(Iterator[Segment], TranscriptionInfo)` as faster-whisper
does: decoding happens while the caller iterates. Each channel (one leg of a call) is
decoded as faster-whisper decodes a whole file, sequentially in 30 s windows with beam
search, the previous text as context, timestamps and temperature fallback, because that is
what reads unfamiliar voices best (a batch of independent VAD chunks read them 2-9 WER points
worse: docs/benchmarks.md). Two things are added:

- Silero VAD first, as faster-whisper's `vad_filter` does it: only the speech is decoded,
  with `batch_onset_pad_ms` of audio before it and `batch_pad_ms` after it, so Whisper
  spends no time on the other party's turns and invents nothing in them; music, tones and
  line noise hold no speech for Silero, so they are never decoded at all. Silence is cut
  here, not by faster-whisper, so that Silero runs once per channel and the audio kept
  before speech can reach further back where something is heard there (Silero hears a
  soft first word late; `chunk_starts`).
- Channels are decoded in parallel, each by one CTranslate2 worker of one thread: on two
  cores two single-threaded decodes do far more than one two-threaded decode
  (bench/decode_speed.py), and the legs of a call are independent.

Segments of all channels come out merged in time order, each split where Silero heard its
leg pause for `min_silence_duration_ms` or more (an utterance is a stretch of speech between
pauses).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from faster_whisper.transcribe import restore_speech_timestamps
from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

from pipeline.config import SttSettings
from pipeline.events import Word
from pipeline.media import SAMPLE_RATE
from pipeline.media.level import frame_power
from pipeline.services import Services

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """One utterance: times in seconds from the start of the audio."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    avg_logprob: float
    no_speech_prob: float
    language: str | None = None


@dataclass(frozen=True)
class TranscriptionInfo:
    """What was transcribed and with which options (stored beside every transcript)."""

    language: str | None
    language_probability: float
    duration: float
    duration_after_vad: float
    model: str
    options: dict[str, Any]


@dataclass(frozen=True)
class TranscribeOptions:
    """Decoding, VAD and hallucination-guard options; fixed at start."""

    beam_size: int = 5
    # Silero VAD: audio kept after and before each stretch of speech, so a silence is cut to
    # at most their sum (a pause stays a pause for Whisper's punctuation and segmenting).
    batch_pad_ms: int = 500
    batch_onset_pad_ms: int = 500
    # ... and up to this much where the audio in between is `batch_onset_margin_db` over
    # the channel's floor (a soft first word Silero heard late).
    batch_onset_reach_ms: int = 800
    batch_onset_margin_db: float = 10.0
    min_silence_duration_ms: int = 500
    vad_threshold: float = 0.5
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    min_word_probability: float = 0.0


class Transcriber:
    """faster-whisper on the speech of each channel, channels decoded in parallel."""

    def __init__(
        self,
        model: WhisperModel,
        options: TranscribeOptions | None = None,
        model_name: str = "",
        workers: int = 2,
    ) -> None:
        self.model = model
        self.options = options or TranscribeOptions()
        self.model_name = model_name
        self.workers = max(1, workers)

    def _vad(self) -> VadOptions:
        o = self.options
        return VadOptions(
            threshold=o.vad_threshold,
            min_silence_duration_ms=o.min_silence_duration_ms,
            speech_pad_ms=o.batch_pad_ms,
        )

    def speech_spans(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """(start, end) seconds of the speech Silero finds in a 16 kHz signal, unpadded."""
        vad = self._vad()
        vad.speech_pad_ms = 0
        return [
            (s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE)
            for s in get_speech_timestamps(audio, vad)
        ]

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Language of the first 30 s of speech of a 16 kHz signal."""
        lang, prob, _ = self.model.detect_language(
            audio, vad_filter=True, vad_parameters=self._vad()
        )
        return lang, float(prob)

    def transcribe(
        self, audio: np.ndarray, language: str | None = None
    ) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """Utterances of a whole 16 kHz mono float32 signal, decoded as they are iterated."""
        segments, info = self.transcribe_channels([audio], language)
        return (seg for _, seg in segments), info

    def transcribe_channels(
        self, channels: Sequence[np.ndarray], language: str | None = None
    ) -> tuple[Iterator[tuple[int, Segment]], TranscriptionInfo]:
        """Utterances of several channels (one per leg), in time order.

        Yields (channel index, segment); the language is detected once, on the channel with
        the most speech, unless given.
        """
        spans = [self.speech_spans(a) for a in channels]
        speech = [sum(e - s for s, e in sp) for sp in spans]
        prob = 1.0
        if language is None and any(speech):
            language, prob = self.detect_language(channels[int(np.argmax(speech))])
        info = TranscriptionInfo(
            language=language,
            language_probability=prob,
            duration=max((len(a) for a in channels), default=0) / SAMPLE_RATE,
            duration_after_vad=round(sum(speech), 3),
            model=self.model_name,
            options=asdict(self.options),
        )
        voiced = [(ch, a, spans[ch]) for ch, a in enumerate(channels) if spans[ch]]
        return self._merged(voiced, language), info

    def _channel(
        self, audio: np.ndarray, language: str | None, spans: list[tuple[float, float]]
    ) -> Iterator[Segment]:
        """One channel, as plain faster-whisper decodes a file, on its speech only."""
        o = self.options
        # faster-whisper's vad_filter pads both sides alike; so the speech is cut here, as
        # it does (its collect_chunks and restore_speech_timestamps), with our own pads.
        starts = chunk_starts(
            audio, spans, o.batch_onset_pad_ms, o.batch_onset_reach_ms, o.batch_onset_margin_db
        )
        chunks = padded_chunks(spans, starts, o.batch_pad_ms, len(audio))
        segments, _ = self.model.transcribe(
            np.concatenate(collect_chunks(audio, chunks)[0]),
            language=language,
            beam_size=o.beam_size,
            word_timestamps=True,
            condition_on_previous_text=True,
            vad_filter=False,
            no_speech_threshold=o.no_speech_threshold,
            log_prob_threshold=o.log_prob_threshold,
            compression_ratio_threshold=o.compression_ratio_threshold,
        )
        for seg in restore_speech_timestamps(segments, chunks, SAMPLE_RATE):
            if seg.compression_ratio > o.compression_ratio_threshold:
                continue  # a repetition loop every temperature produced
            words = [
                (w.word, _in_speech(w.word.strip(), w.start, w.end, w.probability, spans))
                for w in (seg.words or [])
                if w.word.strip() and w.probability >= o.min_word_probability
            ]
            for piece in _split_at_pauses(words, spans, starts, o.batch_pad_ms):
                yield Segment(
                    start=piece[0][1].start,
                    end=piece[-1][1].end,
                    text="".join(raw for raw, _ in piece).strip(),
                    words=tuple(w for _, w in piece),
                    avg_logprob=float(seg.avg_logprob),
                    no_speech_prob=float(seg.no_speech_prob),
                    language=language,
                )

    def _merged(
        self,
        channels: list[tuple[int, np.ndarray, list[tuple[float, float]]]],
        language: str | None,
    ) -> Iterator[tuple[int, Segment]]:
        """Every channel decoded in its own thread (at most `workers` at once), merged by
        start time as they come: a segment is yielded once every other channel has decoded
        past it or is done."""
        if not channels:
            return
        slots = threading.Semaphore(self.workers)
        stop = threading.Event()
        queues: dict[int, queue.Queue[Segment | BaseException | None]] = {
            ch: queue.Queue(maxsize=64) for ch, _, _ in channels
        }

        def run(ch: int, audio: np.ndarray, spans: list[tuple[float, float]]) -> None:
            def put(item: Segment | BaseException | None) -> bool:
                while not stop.is_set():
                    try:
                        queues[ch].put(item, timeout=0.2)
                        return True
                    except queue.Full:
                        continue
                return False  # the consumer is gone: stop decoding

            with slots:
                try:
                    for seg in self._channel(audio, language, spans):
                        if not put(seg):
                            return
                except BaseException as exc:  # handed to the consumer, raised there
                    put(exc)
                    return
            put(None)

        threads = [
            threading.Thread(target=run, args=c, daemon=True, name=f"transcribe-ch{c[0]}")
            for c in channels
        ]
        for t in threads:
            t.start()
        heads: dict[int, Segment] = {}
        open_channels = set(queues)
        try:
            while open_channels or heads:
                for ch in sorted(open_channels - set(heads)):
                    item = queues[ch].get()
                    if item is None:
                        open_channels.discard(ch)
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        heads[ch] = item
                if not heads:
                    break
                ch = min(heads, key=lambda c: (heads[c].start, c))
                yield ch, heads.pop(ch)
        finally:
            stop.set()  # producers still decoding stop at their next segment


_EDGE_S = 0.1  # what a word may reach into the silence after the speech Silero heard
_FRAME = SAMPLE_RATE // 100  # 10 ms, for the level before a speech span
_DIGITAL_SILENCE_DB = -90.0


def _in_speech(
    text: str, start: float, end: float, probability: float, spans: list[tuple[float, float]]
) -> Word:
    """A word with its times kept inside the speech around it: Whisper often starts the
    first word of a window in the pause before it, and stretches a last word into the
    pause after it."""
    i = bisect.bisect_right([s for s, _ in spans], end) - 1
    if i >= 0:
        s, e = spans[i]
        if start < s < end:
            start = s
        if start < e + _EDGE_S < end:
            end = e + _EDGE_S
    return Word(
        word=text,
        start=round(float(start), 3),
        end=round(float(end), 3),
        probability=round(float(probability), 4),
    )


def chunk_starts(
    audio: np.ndarray,
    spans: list[tuple[float, float]],
    pad_ms: int,
    reach_ms: int,
    margin_db: float,
) -> list[float]:
    """Where the audio decoded for each speech span starts (seconds): `pad_ms` before it,
    or `reach_ms` where the audio between is `margin_db` louder than the channel's floor.
    Silero hears a soft first word late, often one followed by a pause ("Alright, ...", its
    first speech frame 0.8 s after the voice), so the word lies wholly before the span. Not
    the longer pad everywhere: that read the real French voice worse (docs/benchmarks.md).
    Hand-written: a 10 ms level and a percentile, no library's VAD answers "anything here"."""
    level = 10 * np.log10(frame_power(audio, _FRAME) + 1e-10)
    # a leg's channel is digital zeros while the other party speaks: not its floor
    heard = level[level > _DIGITAL_SILENCE_DB]
    loud = level > (np.percentile(heard, 20) if heard.size else 0.0) + margin_db
    starts = []
    for s, _ in spans:
        frame = int(s * 100)
        reach = loud[max(0, frame - reach_ms // 10) : max(0, frame - pad_ms // 10)].any()
        starts.append(max(0.0, s - (reach_ms if reach else pad_ms) / 1000))
    return starts


def padded_chunks(
    spans: list[tuple[float, float]], starts: list[float], after_ms: int, samples: int
) -> list[dict[str, int]]:
    """Speech spans (seconds) as the sample ranges decoded: from `starts` to `after_ms`
    after each span, ranges that meet merged (as faster-whisper's chunks)."""
    after = SAMPLE_RATE * after_ms // 1000
    chunks: list[dict[str, int]] = []
    for (_, e), s in zip(spans, starts, strict=True):
        start, end = round(s * SAMPLE_RATE), min(samples, round(e * SAMPLE_RATE) + after)
        if chunks and start <= chunks[-1]["end"]:
            chunks[-1]["end"] = max(chunks[-1]["end"], end)
        else:
            chunks.append({"start": start, "end": end})
    return chunks


def _split_at_pauses(
    words: list[tuple[str, Word]],
    spans: list[tuple[float, float]],
    starts: list[float],
    after_ms: int,
) -> list[list[tuple[str, Word]]]:
    """Runs of words that Silero heard as one stretch of speech (no pause of
    `min_silence_duration_ms` between them). A word in the pause between two stretches
    goes with the nearer one, the pause shared as the audio kept before and after them
    shares it: a first word Silero heard late is in the next stretch, not the one before."""
    after = after_ms / 1000
    bounds = [0.0]
    for ((_, end), (s, _)), start in zip(itertools.pairwise(spans), starts[1:], strict=True):
        before = s - start
        bounds.append(s - (s - end) * before / (before + after) if before + after else s)
    pieces: list[list[tuple[str, Word]]] = []
    last = -2
    for raw, w in words:
        span = bisect.bisect_right(bounds, (w.start + w.end) / 2) - 1
        if pieces and span == last:
            pieces[-1].append((raw, w))
        else:
            pieces.append([(raw, w)])
        last = span
    return pieces


def options_from(stt: SttSettings) -> TranscribeOptions:
    """Transcriber options from the settings."""
    return TranscribeOptions(
        beam_size=stt.beam_size,
        batch_pad_ms=stt.batch_pad_ms,
        batch_onset_pad_ms=stt.batch_onset_pad_ms,
        batch_onset_reach_ms=stt.batch_onset_reach_ms,
        batch_onset_margin_db=stt.batch_onset_margin_db,
        min_silence_duration_ms=stt.min_silence_duration_ms,
        no_speech_threshold=stt.no_speech_threshold,
        min_word_probability=stt.min_word_probability,
    )


def transcriber_of(services: Services) -> Transcriber:
    """The process's Transcriber (one Whisper model shared by batch and live)."""
    st = services.settings.stt
    return services.component(
        "transcriber",
        lambda: Transcriber(
            services.whisper_model(), options_from(st), model_name=st.model, workers=st.workers
        ),
    )
