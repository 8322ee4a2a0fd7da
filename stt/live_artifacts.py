"""What a finished live call leaves: its transcript and manifest
(`recordings.transcripts.finish_transcript`, as batch does), when the call was opted in
its two-channel recording from the stored parts (and the recording.ready that has it
transcribed in batch), and no live objects (checkpoint, parts)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.config import RedactionSettings
from pipeline.events import DtmfReceived, RecordingReady, TranscriptReady, Utterance
from pipeline.media import SAMPLE_RATE
from pipeline.media.audio_file import write_wav
from pipeline.store import ObjectStore
from recordings.audio_masks import mask_audio
from recordings.redaction import Masked, masked_spans, redact_presses
from recordings.transcripts import finish_transcript
from stt.live_call import LEGS, LiveCall, assemble, delete_live_objects, ensure_manifest, load_parts
from stt.streaming import StreamingOptions

RECORDING_NAME = "recording.wav"


def store_finished_call(
    store: ObjectStore,
    call: LiveCall,
    reason: str,
    options: StreamingOptions,
    redaction: RedactionSettings | None = None,
    tags_of: Callable[[Sequence[Utterance], float], list[str]] | None = None,
) -> tuple[TranscriptReady, RecordingReady | None]:
    """Write the call's transcript (and its recording, when kept), drop its live objects;
    its legs are closed and every final is in `call.finals`. Returns the transcript.ready
    and, for a kept recording, the recording.ready that queues its batch transcription.

    With `redaction` (the call's tenant is redacted), the recording's audio over the finals'
    masks and over key presses that spell personal data (a card keyed into an IVR; they are
    not stored) is silenced or toned before it is written. `tags_of(finals, duration)`: the
    categories the call met."""
    for leg in call.legs.values():
        leg.cut_part()
    parts = load_parts(store, call)
    for leg in call.legs.values():
        parts.setdefault(leg.leg, []).extend(leg.ready_parts)
        leg.ready_parts.clear()
    channels = [assemble(parts.get(leg, [])) for leg in LEGS]
    duration = max(len(c) for c in channels) / SAMPLE_RATE
    manifest = ensure_manifest(store, call)
    language = call.language or next(iter(call.leg_languages.values()), None)
    update: dict[str, object] = {"end_reason": reason}
    recording = None
    finals = list(call.finals.values())
    presses: list[DtmfReceived] = list(call.presses)
    press_masks: list[Masked] = []
    if redaction is not None:
        presses, press_masks = redact_presses(presses)
    if duration > 0 and call.record:
        if redaction is not None:  # only a recording that is kept needs its audio masked
            spans = [*masked_spans(finals), *press_masks]
            legs = dict(enumerate(LEGS))
            channels = mask_audio(
                channels, SAMPLE_RATE, spans, legs, redaction.audio, redaction.audio_pad_s
            )
        update["recording_key"] = manifest.prefix + RECORDING_NAME
        update["channels"] = {"0": "agent", "1": "customer"}
        uri = store.put(
            manifest.prefix + RECORDING_NAME, write_wav(channels, SAMPLE_RATE), "audio/wav"
        )
        recording = RecordingReady(
            **{**manifest.details(), "language": language},
            uri=uri,
            channels={"0": "agent", "1": "customer"},
        )
    info = {
        "source": "live",
        "language": language,
        "leg_languages": call.leg_languages,
        "duration": duration,
        "reason": reason,
        "options": {
            "hangover_ms": options.hangover_ms,
            "min_speech_ms": options.min_speech_ms,
            "max_utterance_s": options.max_utterance_s,
        },
    }
    tags = tags_of(finals, duration) if tags_of is not None else []
    ready = finish_transcript(
        store,
        manifest,
        finals,
        info,
        "live",
        duration,
        language,
        presses,
        tags,
        press_masks,
        update,
    )
    delete_live_objects(store, call)
    return ready, recording
