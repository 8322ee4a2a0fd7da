"""Transcript artifacts: transcript.json and speaker-labelled transcript.vtt beside the audio."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, Literal

import srt

from pipeline.catalog import CallManifest, save_manifest
from pipeline.events import DtmfReceived, TranscriptReady, Utterance
from pipeline.ids import call_key
from pipeline.store import ObjectNotFound, ObjectStore
from recordings.call_stats import CallStats, call_statistics, facts
from recordings.redaction import Masked, masked_spans

JSON_NAME = "transcript.json"
VTT_NAME = "transcript.vtt"


def interleave(utterances: Iterable[Utterance]) -> list[Utterance]:
    """Both legs' utterances in speaking order (start time, then leg)."""
    return sorted(utterances, key=lambda u: (u.start, u.leg, u.utterance_id))


def _clock(t: float) -> str:
    ms = int(round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _vtt_text(text: str) -> str:
    # "-->" or a blank line would end a cue; < and & would open markup.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def to_vtt(utterances: Sequence[Utterance]) -> str:
    """WebVTT with one cue per utterance and the leg as the voice (`<v agent>`)."""
    lines = ["WEBVTT", ""]
    for u in interleave(utterances):
        lines += [
            u.utterance_id,
            f"{_clock(u.start)} --> {_clock(u.end)}",
            f"<v {u.leg}>{_vtt_text(u.text)}",
            "",
        ]
    return "\n".join(lines)


def to_srt(utterances: Sequence[Utterance]) -> str:
    """SubRip, one cue per utterance, the leg before its text (`agent: ...`): SRT has no
    voices. Composed by the `srt` package, which numbers the cues, formats the times and
    keeps the text as it is (a blank line inside one would end the cue: it is folded)."""
    return str(
        srt.compose(
            srt.Subtitle(
                index=i,
                start=timedelta(seconds=u.start),
                end=timedelta(seconds=u.end),
                content=f"{u.leg}: {' '.join(u.text.split())}",
            )
            for i, u in enumerate(interleave(utterances), start=1)
        )
    )


def to_txt(utterances: Sequence[Utterance]) -> str:
    """Plain text, one line per utterance: `[00:00:01.200] agent: text`."""
    return "".join(f"[{_clock(u.start)}] {u.leg}: {u.text}\n" for u in interleave(utterances))


def to_document(
    tenant: str,
    call_id: str,
    utterances: Sequence[Utterance],
    info: dict[str, Any],
    source: str,
    presses: Sequence[DtmfReceived] = (),
    statistics: CallStats | None = None,
    tags: Sequence[str] | None = None,
    masked: Sequence[Masked] = (),
) -> dict[str, Any]:
    """The transcript.json document: utterances with words, the key presses of a live call
    (`dtmf`: leg, digit, start, duration), how they were made, and once the call is over
    its statistics (recordings/call_stats.py) and categories (`tags`), and where redaction
    masked something, what kind where (`redactions`: kind, leg, start, end; the audit
    record, never the value; `masked` adds what was masked besides the words: key presses)."""
    doc: dict[str, Any] = {
        "v": 1,
        "tenant": tenant,
        "call_id": call_id,
        "source": source,
        "info": info,
        "utterances": [
            u.model_dump(
                mode="json",
                exclude={"v", "tenant", "call_id", "type", "revision", "tentative"},
            )
            for u in interleave(utterances)
        ],
        "dtmf": [
            p.model_dump(mode="json", include={"leg", "digit", "start", "duration"})
            for p in sorted(presses, key=lambda p: p.start)
        ],
    }
    if statistics is not None:
        doc["statistics"] = statistics.model_dump()
    if tags is not None:
        doc["tags"] = list(tags)
    masks = sorted([*masked_spans(utterances), *masked], key=lambda m: (m.start, m.leg))
    if masks:
        doc["redactions"] = [asdict(m) for m in masks]
    return doc


def from_document(doc: dict[str, Any]) -> list[Utterance]:
    """Utterances of a stored transcript.json."""
    return [Utterance(tenant=doc["tenant"], call_id=doc["call_id"], **u) for u in doc["utterances"]]


def stored_presses(store: ObjectStore, manifest: CallManifest) -> list[DtmfReceived]:
    """The key presses the call's stored transcript lists (a live call's, kept when its
    recording is transcribed again in batch)."""
    if not manifest.transcript_key:
        return []
    try:
        doc = json.loads(store.get(manifest.transcript_key))
    except (ObjectNotFound, ValueError):
        return []
    return [
        DtmfReceived(tenant=manifest.tenant, call_id=manifest.call_id, **p)
        for p in doc.get("dtmf", [])
    ]


def write_transcript(
    store: ObjectStore,
    tenant: str,
    call_id: str,
    started_at: datetime,
    utterances: Sequence[Utterance],
    info: dict[str, Any],
    source: str,
    presses: Sequence[DtmfReceived] = (),
    statistics: CallStats | None = None,
    tags: Sequence[str] | None = None,
    masked: Sequence[Masked] = (),
) -> tuple[str, str]:
    """Write transcript.json and transcript.vtt under the call's prefix; returns both URIs.

    Same call, same keys: reprocessing overwrites.
    """
    doc = to_document(tenant, call_id, utterances, info, source, presses, statistics, tags, masked)
    json_uri = store.put(
        call_key(tenant, call_id, started_at, JSON_NAME),
        json.dumps(doc, ensure_ascii=False, indent=1).encode(),
        "application/json",
    )
    vtt_uri = store.put(
        call_key(tenant, call_id, started_at, VTT_NAME), to_vtt(utterances).encode(), "text/vtt"
    )
    return json_uri, vtt_uri


def finish_transcript(
    store: ObjectStore,
    manifest: CallManifest,
    utterances: Sequence[Utterance],
    info: dict[str, Any],
    source: Literal["live", "batch"],
    duration: float,
    language: str | None,
    presses: Sequence[DtmfReceived] = (),
    tags: Sequence[str] = (),
    masked: Sequence[Masked] = (),
    update: Mapping[str, object] | None = None,
) -> TranscriptReady:
    """A call's transcript is done: its artifacts written (with its statistics and the
    categories it met, `tags`), its manifest `transcribed` (with `update`), and the
    transcript.ready that says so. The one way both workers end a call."""
    statistics = call_statistics(utterances, duration)
    json_uri, vtt_uri = write_transcript(
        store,
        manifest.tenant,
        manifest.call_id,
        manifest.started_at,
        utterances,
        info,
        source,
        presses,
        statistics,
        tags,
        masked,
    )
    done = {"status": "transcribed", "language": language, "error": None, "progress": 1.0}
    save_manifest(
        store,
        manifest.model_copy(
            update={**done, "transcript_key": manifest.prefix + JSON_NAME, **(update or {})}
        ),
    )
    return TranscriptReady(
        tenant=manifest.tenant,
        call_id=manifest.call_id,
        json_uri=json_uri,
        vtt_uri=vtt_uri,
        utterances=len(utterances),
        source=source,
        duration=duration,
        language=language,
        facts=facts(statistics),
        tags=tuple(tags),
    )
