"""Whisper for short live clips: encode only the frames a batch needs, not a 30 s window.

faster-whisper pads every clip to a 30 s window, so on CPU a 2 s utterance costs as much
encoder time as 30 s of audio (about 1 s on two cores) and batching clips does not help.
CTranslate2 encodes shorter inputs; on our clips the text is the same and a batch of eight
2-5 s clips decodes in about a tenth of the time. Same contract as
`Transcriber.transcribe_clips`, so the live worker can use either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ctranslate2
import numpy as np
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import (
    get_compression_ratio,
    get_ctranslate2_storage,
    merge_punctuations,
)

from pipeline.config import Settings
from pipeline.events import Word
from pipeline.media import SAMPLE_RATE
from pipeline.services import Services
from stt.streaming import StreamingOptions
from stt.transcriber import Segment
from stt.words import join_words

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

MAX_FRAMES = 3000  # one Whisper window (30 s of 10 ms frames)
_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"
_TOKENS_PER_S = 8
_END_GUARD_S = 0.15  # a word starting this close to the clip end is a squeezed repeat
_MIN_REPEAT = 3
_WORDY = re.compile(r"\w")
_MAX_PROMPT_TOKENS = 128  # of text said before, so that the prompt leaves room to answer


@dataclass(frozen=True)
class DecoderOptions:
    """Greedy decoding and the hallucination guard (as openai/whisper's thresholds)."""

    beam_size: int = 1
    batch_size: int = 8
    # Silence appended to each clip so the last word is not cut (10 ms frames).
    margin_frames: int = 50
    # Shortest window encoded (0: the clip plus the margin). On a window of a second or two
    # Whisper base sometimes loses a short answer ("four people" -> "..."); three seconds
    # read it right but cost up to 2.5x the encoder time on a batch of 1 s partial passes,
    # so the live worker uses it for finals only (`stt.final_min_window_s`).
    min_frames: int = 0
    # Short answers loop ("no. no. no."): a light penalty on repeated tokens stops it. Only
    # for short clips (batched apart from longer ones): on whole sentences it would also
    # penalise the second comma or "the", and long clips do not loop that way.
    repetition_penalty: float = 1.2
    repetition_penalty_max_s: float = 2.5
    max_tokens: int = 224
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    min_word_probability: float = 0.0


class ShortWindowDecoder:
    """Batched Whisper decoding of independent short clips, with word times."""

    def __init__(self, model: WhisperModel, options: DecoderOptions | None = None) -> None:
        self.model = model
        self.options = options or DecoderOptions()
        self.calls = 0  # Whisper batches run (the worker's batching is measured with it)

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        """Decode 16 kHz float32 clips; None where a clip holds no credible speech.

        Times of each result are relative to the start of its own clip. `prompt`: text said
        before the clips (a question the caller answers), given to Whisper as previous text.
        """
        out: list[Segment | None] = [None] * len(clips)
        # A clip shares a batch only with clips read the same way (window, repetition
        # penalty), so that a final reads the same whatever other calls' clips came with it.
        groups: dict[tuple[int, bool], list[int]] = {}
        for i in sorted(range(len(clips)), key=lambda i: len(clips[i])):
            groups.setdefault(self.reading(len(clips[i])), []).append(i)
        step = self.options.batch_size
        for order in groups.values():
            for b in range(0, len(order), step):
                idx = order[b : b + step]
                batch = self._batch([clips[i] for i in idx], language, prompt)
                for i, seg in zip(idx, batch, strict=True):
                    out[i] = seg
        return out

    def reading(self, samples: int) -> tuple[int, bool]:
        """How a clip of `samples` is read: its window in frames where the decoder has a
        minimum one (else 0: padded to the batch's longest clip, as partial passes are, for
        speed), and whether the repetition penalty applies. Clips read alike decode in one
        Whisper call; the others one call after the other."""
        o = self.options
        return (
            self._window(samples) if o.min_frames else 0,
            samples / SAMPLE_RATE <= o.repetition_penalty_max_s,
        )

    def _window(self, samples: int) -> int:
        """Frames encoded for a clip of `samples` (the longest of its batch)."""
        o = self.options
        hop = self.model.feature_extractor.hop_length
        return min(MAX_FRAMES, max(o.min_frames, samples // hop + o.margin_frames))

    def _batch(
        self, clips: list[np.ndarray], language: str | None, prompt: str | None
    ) -> list[Segment | None]:
        self.calls += 1
        fe = self.model.feature_extractor
        # Pad in the audio domain (digital silence, as Whisper saw in training): padding the
        # features with zeros instead makes short clips of a batch hallucinate.
        frames = self._window(max(len(c) for c in clips))
        width = frames * fe.hop_length
        batch = np.stack(
            [
                fe(
                    np.pad(np.asarray(c[:width], dtype=np.float32), (0, width - min(len(c), width)))
                )[:, :frames]
                for c in clips
            ]
        ).astype(np.float32)
        encoded = self.model.model.encode(get_ctranslate2_storage(batch), to_cpu=False)
        if language is not None:
            languages = [language] * len(clips)
        else:
            detected = self.model.model.detect_language(encoded)
            languages = [d[0][0][2:-2] for d in detected]
        results: list[Segment | None] = [None] * len(clips)
        for lang in sorted(set(languages)):
            members = [i for i, la in enumerate(languages) if la == lang]
            sub = encoded if len(members) == len(clips) else _select(encoded, members)
            durations = [len(clips[i]) / SAMPLE_RATE for i in members]
            decoded = self._decode(sub, durations, lang, frames, prompt)
            for i, seg in zip(members, decoded, strict=True):
                results[i] = seg
        return results

    def _decode(
        self,
        encoded: Any,
        durations: list[float],
        language: str,
        frames: int,
        prompt_text: str | None,
    ) -> list[Segment | None]:
        o = self.options
        tok = Tokenizer(
            self.model.hf_tokenizer,
            self.model.model.is_multilingual,
            task="transcribe",
            language=language,
        )
        previous: list[int] = []
        if prompt_text and prompt_text.strip():
            # As openai/whisper's initial prompt: the text's last tokens.
            previous = tok.encode(" " + prompt_text.strip())[-(_MAX_PROMPT_TOKENS - 1) :]
        prompt = self.model.get_prompt(tok, previous, without_timestamps=True)
        suppress = sorted(
            {
                *tok.non_speech_tokens,
                tok.transcribe,
                tok.translate,
                tok.sot,
                tok.sot_prev,
                tok.sot_lm,
                tok.no_speech,
            }
        )
        # Speech holds at most ~6 tokens a second; a longer output is a repetition loop.
        # CTranslate2 generates at most max_length / 2 tokens (openai/whisper's sample_len),
        # and at most max_length less the prompt's tokens before its last task token.
        budget = min(o.max_tokens, int(_TOKENS_PER_S * max(durations)) + 8)
        max_length = min(self.model.max_length, max(2 * budget, len(prompt) - 1 + budget))
        generated = self.model.model.generate(
            encoded,
            [prompt] * len(durations),
            beam_size=o.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
            repetition_penalty=(
                o.repetition_penalty if max(durations) <= o.repetition_penalty_max_s else 1.0
            ),
        )
        tokens = [[t for t in g.sequences_ids[0] if t < tok.eot] for g in generated]
        alignments = self.model.find_alignment(tok, tokens, encoded, frames)
        out: list[Segment | None] = []
        for g, toks, words, dur in zip(generated, tokens, alignments, durations, strict=True):
            text = tok.decode(toks).strip()
            if not _WORDY.search(text):
                text = ""  # "..." or "-": Whisper's way of hearing nothing it can spell
            avg_logprob = g.scores[0] * len(toks) / (len(toks) + 1) if toks else -10.0
            if not text or (
                g.no_speech_prob > o.no_speech_threshold and avg_logprob < o.log_prob_threshold
            ):
                out.append(None)
                continue
            merge_punctuations(words, _PREPEND, _APPEND)
            kept = [
                Word(
                    word=w["word"].strip(),
                    start=round(float(w["start"]), 3),
                    end=round(float(w["end"]), 3),
                    probability=round(float(w["probability"]), 4),
                )
                for w in words
                if w["word"].strip() and w["probability"] >= o.min_word_probability
            ]
            # With a short window Whisper sometimes says the clip again: the copy's words are
            # squeezed at the very end of the clip, or repeat a run of words just said.
            cut = trim_repetition([w for w in kept if w.start < dur - _END_GUARD_S])
            if len(cut) != len(kept):
                text = join_words(cut)
            if not cut or get_compression_ratio(text) > o.compression_ratio_threshold:
                out.append(None)
                continue
            kept = cut
            out.append(
                Segment(
                    start=kept[0].start,
                    end=kept[-1].end,
                    text=text,
                    words=tuple(kept),
                    avg_logprob=float(avg_logprob),
                    no_speech_prob=float(g.no_speech_prob),
                    language=language,
                )
            )
        return out


def trim_repetition(words: list[Word]) -> list[Word]:
    """Words up to where a run of at least three words repeats the run just before it."""
    keys = [w.word.lower().strip(".,?!") for w in words]
    n = len(keys)
    for start in range(1, n):
        for size in range(_MIN_REPEAT, min(start, n - start) + 1):
            if keys[start : start + size] == keys[start - size : start]:
                return words[:start]
    return words


def _select(encoded: Any, members: list[int]) -> Any:
    """Rows of an encoder output (a CPU CTranslate2 StorageView) as a new StorageView."""
    rows = np.asarray(encoded)[members]
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(rows))


def streaming_options(settings: Settings) -> StreamingOptions:
    """StreamingOptions from the live and stt settings."""
    live, stt = settings.live, settings.stt
    return StreamingOptions(
        vad_model=live.vad,
        vad_aggressiveness=stt.vad_aggressiveness,
        hangover_ms=live.hangover_ms,
        min_speech_ms=live.min_speech_ms,
        speech_pad_ms=stt.speech_pad_ms,
        onset_pad_ms=stt.onset_pad_ms,
        max_utterance_s=live.max_utterance_s,
        partial_interval_s=live.partial_interval_s,
        early_final=live.early_final,
        noise_margin_db=live.vad_noise_margin_db,
        tentative_partials=live.tentative_partials,
    )


def live_decoder_of(
    services: Services,
    *,
    final: bool = False,
    beam_size: int | None = None,
    min_window_s: float | None = None,
) -> ShortWindowDecoder:
    """The process's live decoders (sharing the one Whisper model): greedy for partial
    passes, `live.beam_size` for finals and the passes likely to become finals. Finals are
    decoded in a window of at least `stt.final_min_window_s`. `beam_size` and
    `min_window_s` override."""
    stt = services.settings.stt
    beam = beam_size or (services.settings.live.beam_size if final else 1)
    window = min_window_s if min_window_s is not None else stt.final_min_window_s
    min_frames = int(window * 100) if final else 0
    return services.component(
        f"stt.live_decoder.beam{beam}.min{min_frames}",
        lambda: ShortWindowDecoder(
            services.whisper_model(),
            DecoderOptions(
                beam_size=beam,
                batch_size=8,
                no_speech_threshold=stt.no_speech_threshold,
                min_word_probability=stt.min_word_probability,
                min_frames=min_frames,
            ),
        ),
    )
