"""Whisper transcription: VAD picks the speech, Whisper decodes it in batches, lazily.

`Transcriber.transcribe` returns `(Iterator[Segment], TranscriptionInfo)` as faster-whisper
does: decoding happens while the caller iterates. Each segment is one utterance (one
stretch of speech between pauses). `transcribe_clips` decodes independent clips in one
batch: the live worker uses it to batch utterances of several legs and calls at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.events import Word
from stt.vad import VadOptions, speech_segments

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from pipeline.services import Services

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_GAP = np.zeros(SAMPLE_RATE // 10, dtype=np.float32)  # keeps batched clips apart
# Utterances of one channel are packed into windows of up to this length: Whisper pads
# every input to 30 s, so one short utterance per window would waste most of the encoder.
MAX_CHUNK_SAMPLES = 28 * SAMPLE_RATE
_PIECE_GAP = SAMPLE_RATE * 3 // 10  # a pause between packed utterances, for punctuation


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
    """Decoding and hallucination-guard options; fixed at start."""

    beam_size: int = 5
    batch_size: int = 8
    vad: VadOptions = field(default_factory=VadOptions)
    # Whisper invents sentences on noise: drop a clip it thinks is not speech and
    # decodes with low confidence, as openai/whisper does.
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    min_word_probability: float = 0.0


class Transcriber:
    """faster-whisper behind VAD segmentation and batched decoding."""

    def __init__(
        self, model: WhisperModel, options: TranscribeOptions | None = None, model_name: str = ""
    ) -> None:
        from faster_whisper import BatchedInferencePipeline

        self.model = model
        self.options = options or TranscribeOptions()
        self.model_name = model_name
        self._batched = BatchedInferencePipeline(model)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Language of up to 30 s of speech."""
        lang, prob, _ = self.model.detect_language(audio[: 30 * SAMPLE_RATE])
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
        """Utterances of several channels (one per leg), batched together, in time order.

        Yields (channel index, segment); the language is detected once over the speech of
        all channels unless given.
        """
        chunks: list[_Chunk] = []
        for ch, audio in enumerate(channels):
            chunks += pack_spans(ch, audio, speech_segments(audio, self.options.vad))
        chunks.sort(key=lambda c: (c.pieces[0][1], c.channel))
        voiced = sum(e - s for c in chunks for _, s, e in c.pieces) / SAMPLE_RATE
        prob = 1.0
        if language is None and chunks:
            language, prob = self.detect_language(np.concatenate([c.audio for c in chunks[:2]]))
        info = TranscriptionInfo(
            language=language,
            language_probability=prob,
            duration=max((len(a) for a in channels), default=0) / SAMPLE_RATE,
            duration_after_vad=voiced,
            model=self.model_name,
            options=asdict(self.options),
        )
        return self._iterate(chunks, language), info

    def _iterate(self, chunks: list[_Chunk], language: str | None) -> Iterator[tuple[int, Segment]]:
        step = self.options.batch_size
        for i in range(0, len(chunks), step):
            batch = chunks[i : i + step]
            results = self.transcribe_clips([c.audio for c in batch], language)
            out = [
                (chunk.channel, seg)
                for chunk, whole in zip(batch, results, strict=True)
                if whole is not None
                for seg in chunk.split(whole)
            ]
            out.sort(key=lambda cs: (cs[1].start, cs[0]))
            yield from out

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        """Decode independent clips in one batch; None where a clip holds no credible speech.

        Times of each result are relative to the start of its own clip.
        """
        if not clips:
            return []
        parts: list[np.ndarray] = []
        bounds: list[tuple[float, float]] = []
        pos = 0
        for clip in clips:
            clip = clip[: 30 * SAMPLE_RATE]  # one Whisper window at most
            bounds.append((pos / SAMPLE_RATE, (pos + len(clip)) / SAMPLE_RATE))
            parts.extend([clip, _GAP])
            pos += len(clip) + len(_GAP)
        audio = np.concatenate(parts).astype(np.float32)
        o = self.options
        segments, info = self._batched.transcribe(
            audio,
            language=language,
            beam_size=o.beam_size,
            batch_size=o.batch_size,
            word_timestamps=True,
            clip_timestamps=[{"start": s, "end": e} for s, e in bounds],
            initial_prompt=prompt,
            multilingual=language is None,
            log_prob_threshold=o.log_prob_threshold,
            no_speech_threshold=o.no_speech_threshold,
            compression_ratio_threshold=o.compression_ratio_threshold,
        )
        fps = self.model.frames_per_second
        by_seek = {
            int(int(s * SAMPLE_RATE) / SAMPLE_RATE * fps): i for i, (s, _) in enumerate(bounds)
        }
        grouped: list[list[Any]] = [[] for _ in clips]
        for seg in segments:
            idx = by_seek.get(seg.seek)
            if idx is None:  # rounding: fall back to the clip that contains the segment
                idx = max(i for i, (s, _) in enumerate(bounds) if s <= seg.start + 1e-3)
            grouped[idx].append(seg)
        return [self._merge(segs, bounds[i][0], info.language) for i, segs in enumerate(grouped)]

    def _merge(self, segs: list[Any], offset: float, language: str | None) -> Segment | None:
        o = self.options
        kept = [
            s
            for s in segs
            if not (
                s.no_speech_prob > o.no_speech_threshold and s.avg_logprob < o.log_prob_threshold
            )
            and s.compression_ratio <= o.compression_ratio_threshold
        ]
        words = tuple(
            Word(
                word=w.word.strip(),
                start=round(max(0.0, w.start - offset), 3),
                end=round(max(0.0, w.end - offset), 3),
                probability=round(float(w.probability), 4),
            )
            for s in kept
            for w in (s.words or [])
            if w.word.strip() and w.probability >= o.min_word_probability
        )
        text = " ".join(s.text.strip() for s in kept).strip()
        if not text or not words:
            return None
        return Segment(
            start=words[0].start,
            end=words[-1].end,
            text=text,
            words=words,
            avg_logprob=float(np.mean([s.avg_logprob for s in kept])),
            no_speech_prob=float(max(s.no_speech_prob for s in kept)),
            language=language,
        )


def shift(seg: Segment, offset: float) -> Segment:
    """The same segment with every time moved by `offset` seconds."""
    return Segment(
        start=round(seg.start + offset, 3),
        end=round(seg.end + offset, 3),
        text=seg.text,
        words=tuple(
            Word(
                word=w.word,
                start=round(w.start + offset, 3),
                end=round(w.end + offset, 3),
                probability=w.probability,
            )
            for w in seg.words
        ),
        avg_logprob=seg.avg_logprob,
        no_speech_prob=seg.no_speech_prob,
        language=seg.language,
    )


def transcriber_of(services: Services) -> Transcriber:
    """The process's Transcriber (one Whisper model shared by batch and live)."""
    from stt.batch import options_from

    st = services.settings.stt
    return services.component(
        "transcriber",
        lambda: Transcriber(services.whisper_model(), options_from(st), model_name=st.model),
    )


@dataclass(frozen=True)
class _Chunk:
    """Utterances of one channel packed into one Whisper window.

    `pieces` holds (position in the chunk, start, end) in samples, start/end in the channel.
    """

    channel: int
    pieces: tuple[tuple[int, int, int], ...]
    audio: np.ndarray

    def split(self, whole: Segment) -> list[Segment]:
        """One segment per packed utterance, words moved back to channel time."""
        per_piece: list[list[Word]] = [[] for _ in self.pieces]
        for w in whole.words:
            mid = (w.start + w.end) / 2 * SAMPLE_RATE
            idx = max((i for i, (pos, _, _) in enumerate(self.pieces) if pos <= mid), default=0)
            pos, start, end = self.pieces[idx]

            def back(t: float, pos: int = pos, start: int = start, end: int = end) -> float:
                return round(min(max(start + t * SAMPLE_RATE - pos, start), end) / SAMPLE_RATE, 3)

            per_piece[idx].append(
                Word(word=w.word, start=back(w.start), end=back(w.end), probability=w.probability)
            )
        return [
            Segment(
                start=ws[0].start,
                end=ws[-1].end,
                text=" ".join(w.word for w in ws),
                words=tuple(ws),
                avg_logprob=whole.avg_logprob,
                no_speech_prob=whole.no_speech_prob,
                language=whole.language,
            )
            for ws in per_piece
            if ws
        ]


def pack_spans(channel: int, audio: np.ndarray, spans: list[tuple[int, int]]) -> list[_Chunk]:
    """Pack consecutive speech spans of one channel into chunks of at most 28 s."""
    chunks: list[_Chunk] = []
    pieces: list[tuple[int, int, int]] = []
    parts: list[np.ndarray] = []
    pos = 0

    def close() -> None:
        nonlocal pieces, parts, pos
        if pieces:
            chunks.append(_Chunk(channel, tuple(pieces), np.concatenate(parts).astype(np.float32)))
        pieces, parts, pos = [], [], 0

    for s, e in spans:
        e = min(e, s + MAX_CHUNK_SAMPLES)
        if pieces and pos + (e - s) > MAX_CHUNK_SAMPLES:
            close()
        pieces.append((pos, s, e))
        parts += [audio[s:e], np.zeros(_PIECE_GAP, np.float32)]
        pos += e - s + _PIECE_GAP
    close()
    return chunks
