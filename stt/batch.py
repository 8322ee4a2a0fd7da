"""A finished recording to utterances: each channel transcribed as its leg, interleaved."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from typing import Any, Literal

from pipeline.events import Utterance, utterance_id
from pipeline.media import SAMPLE_RATE
from pipeline.media.audio_file import DecodedAudio
from stt.transcriber import Transcriber, TranscriptionInfo

LegName = Literal["agent", "customer"]
Channels = Mapping[str, LegName] | Literal["mono"]


class ChannelMismatch(ValueError):
    """The channel map does not fit the recording (e.g. two legs named, one channel present)."""


def parse_channels(spec: str) -> dict[str, LegName] | Literal["mono"]:
    """`agent,customer` -> {"0": "agent", "1": "customer"}; `mono` -> "mono"."""
    spec = spec.strip().lower()
    if spec in ("", "mono"):
        return "mono"
    legs = [p.strip() for p in spec.split(",")]
    if any(leg not in ("agent", "customer") for leg in legs) or len(set(legs)) != len(legs):
        raise ChannelMismatch(
            f"channels must be 'mono' or a comma list of distinct legs agent/customer, got {spec!r}"
        )
    return {str(i): leg for i, leg in enumerate(legs)}  # type: ignore[misc]


def check_channels(channels: Channels, present: int) -> None:
    """ChannelMismatch unless the map fits a recording of `present` channels: a leg per
    channel, no channel named that is not there."""
    if channels == "mono":
        return
    for idx, leg in channels.items():
        if int(idx) >= present:
            raise ChannelMismatch(
                f"channel {idx} ({leg}) named but the recording has {present} channel(s)"
            )


def legs_of(audio: DecodedAudio, channels: Channels) -> list[tuple[str, Any]]:
    """(leg, samples) per transcribed channel; refuses a map that names missing channels."""
    if channels == "mono":
        return [("mono", audio.mono())]
    check_channels(channels, len(audio.channels))
    return [
        (leg, audio.channels[int(idx)])
        for idx, leg in sorted(channels.items(), key=lambda kv: int(kv[0]))
    ]


def transcribe_recording(
    transcriber: Transcriber,
    audio: DecodedAudio,
    channels: Channels,
    tenant: str,
    call_id: str,
    language: str | None = None,
) -> tuple[Iterator[Utterance], TranscriptionInfo]:
    """Final batch utterances of every leg in speaking order, decoded lazily."""
    legs = legs_of(audio, channels)
    segments, info = transcriber.transcribe_channels([s for _, s in legs], language)

    def utterances() -> Iterator[Utterance]:
        for ch, seg in segments:
            leg = legs[ch][0]
            yield Utterance(
                tenant=tenant,
                call_id=call_id,
                leg=leg,  # type: ignore[arg-type]
                utterance_id=utterance_id(call_id, leg, int(round(seg.start * SAMPLE_RATE))),
                start=seg.start,
                end=seg.end,
                text=seg.text,
                words=seg.words,
                final=True,
                language=info.language,
                source="batch",
            )

    return utterances(), info


def with_progress(
    utterances: Iterator[Utterance], duration: float, report: Callable[[float], None]
) -> Iterator[Utterance]:
    """The utterances unchanged, calling `report(fraction done)` as each comes.

    The legs are decoded together in speaking order, so how far the latest utterance
    ends into the call is how far the work is (silence at the end is skipped at once)."""
    done = 0.0
    for u in utterances:
        if duration > 0:
            done = max(done, min(1.0, u.end / duration))
            report(done)
        yield u
    report(1.0)


def info_dict(info: TranscriptionInfo) -> dict[str, Any]:
    """TranscriptionInfo as stored in transcript.json."""
    return asdict(info)
