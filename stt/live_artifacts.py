"""What a finished live call leaves: its two-channel recording from the stored parts, its
transcript and manifest (`recordings.transcripts.finish_transcript`, as batch does), and no
live objects (checkpoint, parts)."""

from __future__ import annotations

from pipeline.events import TranscriptReady
from pipeline.media import SAMPLE_RATE
from pipeline.media.audio_file import write_wav
from pipeline.store import ObjectStore
from recordings.transcripts import finish_transcript
from stt.live_call import LEGS, LiveCall, assemble, delete_live_objects, ensure_manifest, load_parts
from stt.streaming import StreamingOptions

RECORDING_NAME = "recording.wav"


def store_finished_call(
    store: ObjectStore, call: LiveCall, reason: str, options: StreamingOptions
) -> TranscriptReady:
    """Write the call's recording and transcript, drop its live objects; its legs are
    closed and every final is in `call.finals`."""
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
    if duration > 0:
        update["recording_key"] = manifest.prefix + RECORDING_NAME
        update["channels"] = {"0": "agent", "1": "customer"}
        store.put(manifest.prefix + RECORDING_NAME, write_wav(channels, SAMPLE_RATE), "audio/wav")
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
    finals = list(call.finals.values())
    ready = finish_transcript(
        store, manifest, finals, info, "live", duration, language, call.presses, **update
    )
    delete_live_objects(store, call)
    return ready
