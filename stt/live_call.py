"""Per-call state of the live worker: one stream per leg, the finals so far, the checkpoint.

Each leg turns media chunks (8 kHz G.711 or 16 kHz Opus PCM, positioned from call start)
into contiguous 16 kHz audio for its StreamingRecognizer and its recording track. The
call's finals and metadata are checkpointed in the object store (`live.json` beside the
call's artifacts) and its audio in parts (`live/{leg}-{start}.pcm`), so a worker that takes
the call over after a restart or a rebalance keeps every final already emitted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pipeline.catalog import CallManifest, ensure_live_manifest, load_manifest
from pipeline.events import CallStarted, DtmfReceived, LegInfo, MediaChunk, Utterance
from pipeline.ids import call_key
from pipeline.media import SAMPLE_RATE
from pipeline.media.resample import StreamTo16k
from pipeline.store import ObjectNotFound, ObjectStore
from stt.streaming import StreamingOptions, StreamingRecognizer

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "live.json"
PARTS_DIR = "live/"
LEGS = ("agent", "customer")
# A gap shorter than this is filled with silence; a longer one is jumped over.
_MAX_FILL_S = 2.0


def press_key(ev: DtmfReceived) -> tuple[str, float, str]:
    """What tells one key press from another (a replay has the same)."""
    return ev.leg, ev.start, ev.digit


def to_16k(position: int, rate: int) -> int:
    """A sample position at `rate` as a 16 kHz position."""
    return position * SAMPLE_RATE // rate


class LegAudio:
    """A leg's chunks (positioned at the leg's rate) as contiguous 16 kHz audio: overlaps
    dropped, gaps up to 2 s filled with silence, and a longer gap or a new rate starts the
    stream again. One stream (`StreamTo16k`, 4 ms of filter delay): resampling chunk by
    chunk left a click at every chunk boundary."""

    def __init__(self) -> None:
        self.rate = 0
        self.expected = -1  # next source sample wanted, at `rate`
        self.dropped_samples = 0
        self._to16k = StreamTo16k(SAMPLE_RATE)

    def feed(self, pcm: np.ndarray, start: int, rate: int) -> tuple[np.ndarray, int | None]:
        """The chunk's new audio at 16 kHz, and the 16 kHz position where the stream
        started again (first chunk, new rate, long gap), else None."""
        restart = None
        if rate != self.rate or self.expected < 0:
            restart = self._restart(rate, start)
        if start < self.expected:
            cut = self.expected - start
            self.dropped_samples += min(cut, len(pcm))
            pcm = pcm[cut:]
            start = self.expected
        if not len(pcm):
            return pcm, restart
        gap = start - self.expected
        if gap > _MAX_FILL_S * rate:
            restart = self._restart(rate, start)
        elif gap > 0:
            pcm = np.concatenate([np.zeros(gap, dtype=np.int16), pcm])
        self.expected = start + len(pcm)
        return self._to16k.process(pcm), restart

    def _restart(self, rate: int, start: int) -> int:
        self.rate, self.expected = rate, start
        self._to16k = StreamTo16k(rate, SAMPLE_RATE)
        return to_16k(start, rate)


class LegStream:
    """One leg: chunks in order (`LegAudio`), into the recogniser and the track."""

    def __init__(self, leg: str, options: StreamingOptions, origin: int) -> None:
        self.leg = leg
        self.recogniser = StreamingRecognizer(options, origin=origin)
        self.audio = LegAudio()
        self.track_start = origin  # 16 kHz position of the first sample not yet in a part
        self.track: list[np.ndarray] = []
        self.track_len = 0
        self.ready_parts: list[tuple[int, np.ndarray]] = []

    def feed(self, chunk: MediaChunk) -> None:
        """Insert one chunk: duplicates and overlaps dropped, short gaps filled with silence."""
        pcm = np.frombuffer(chunk.pcm, dtype="<i2")
        pcm16, restart = self.audio.feed(pcm, chunk.start_sample, chunk.sample_rate)
        if restart is not None:
            self._jump(restart)
        self._push(pcm16)

    def _jump(self, pos: int) -> None:
        """The audio continues at 16 kHz position `pos`: skip the recogniser and the track."""
        if pos > self.recogniser.position:
            self.recogniser.skip_to(pos)
        if pos > self.track_start + self.track_len:
            self.cut_part()
            self.track_start = pos

    def _push(self, pcm16: np.ndarray) -> None:
        if not len(pcm16):
            return
        self.recogniser.insert_audio_chunk(pcm16)
        self.track.append(pcm16)
        self.track_len += len(pcm16)

    def close(self) -> None:
        """End of the leg's audio: the utterance in progress ends."""
        self.recogniser.close()

    def cut_part(self) -> None:
        """Close the track since the last part; the worker stores `ready_parts`."""
        if self.track_len:
            self.ready_parts.append((self.track_start, np.concatenate(self.track)))
            self.track_start += self.track_len
            self.track, self.track_len = [], 0


@dataclass
class LiveCall:
    """What one worker holds of one call in progress."""

    tenant: str
    call_id: str
    started_at: datetime
    agent_id: str | None = None
    direction: str = "inbound"
    caller: str | None = None
    callee: str | None = None
    legs_info: tuple[LegInfo, ...] = ()
    language: str | None = None  # given for the call (or its tenant); None: per leg
    leg_languages: dict[str, str] = field(default_factory=dict)  # detected, then held
    finals: dict[str, Utterance] = field(default_factory=dict)
    presses: list[DtmfReceived] = field(default_factory=list)  # key presses, as they came
    legs: dict[str, LegStream] = field(default_factory=dict)
    ended_at: float | None = None  # wall time call.ended was seen
    end_reason: str = "hangup"
    last_media: float = 0.0  # wall time of the last chunk
    dirty: bool = False  # finals not yet checkpointed
    known: bool = False  # call.started (or a checkpoint of it) seen
    record: bool = False  # kept as a recording, transcribed in batch when it ends

    def prefix_key(self, name: str) -> str:
        """Key of one of the call's objects."""
        return call_key(self.tenant, self.call_id, self.started_at, name)

    def language_of(self, leg: str) -> str | None:
        """The language a leg is decoded in: the call's, else the one detected on it."""
        return self.language or self.leg_languages.get(leg)

    def who(self) -> dict[str, Any]:
        """Who the call is between, as its manifest keeps it."""
        return {
            "agent_id": self.agent_id,
            "direction": self.direction,
            "caller": self.caller,
            "callee": self.callee,
        }

    def apply_started(self, ev: CallStarted) -> None:
        """Take the call's metadata from call.started."""
        self.started_at = ev.started_at
        self.language = ev.language or self.language
        self.agent_id, self.direction = ev.agent_id, ev.direction
        self.caller, self.callee, self.legs_info = ev.caller, ev.callee, ev.legs
        self.known = True

    def checkpoint_doc(self) -> dict[str, Any]:
        """What a successor needs: metadata and every final so far."""
        return {
            "v": 1,
            "tenant": self.tenant,
            "call_id": self.call_id,
            "started_at": self.started_at.isoformat(),
            **self.who(),
            "legs": [li.model_dump() for li in self.legs_info],
            "language": self.language,
            "leg_languages": self.leg_languages,
            "known": self.known,
            "record": self.record,
            "finals": [u.model_dump(mode="json") for u in self.finals.values()],
            "dtmf": [p.model_dump(mode="json") for p in self.presses],
        }

    def press(self, ev: DtmfReceived) -> bool:
        """Keep a key press (False: a replay of one already kept)."""
        if any(press_key(p) == press_key(ev) for p in self.presses):
            return False
        self.presses.append(ev)
        return True


def save_checkpoint(store: ObjectStore, call: LiveCall) -> None:
    """Write the call's checkpoint (finals and metadata)."""
    store.put(
        call.prefix_key(CHECKPOINT_NAME),
        json.dumps(call.checkpoint_doc()).encode(),
        "application/json",
    )
    call.dirty = False


def save_part(store: ObjectStore, call: LiveCall, leg: str, start: int, pcm: np.ndarray) -> None:
    """Write one stretch of a leg's 16 kHz audio."""
    store.put(
        call.prefix_key(f"{PARTS_DIR}{leg}-{start:012d}.pcm"),
        pcm.astype("<i2").tobytes(),
        "application/octet-stream",
    )


def load_checkpoint(store: ObjectStore, tenant: str, call_id: str) -> dict[str, Any] | None:
    """The checkpoint of a call in progress, or None."""
    manifest = load_manifest(store, tenant, call_id)
    if manifest is None:
        return None
    try:
        doc: dict[str, Any] = json.loads(store.get(manifest.prefix + CHECKPOINT_NAME))
    except ObjectNotFound:
        return None
    return doc


def call_from_checkpoint(doc: dict[str, Any]) -> LiveCall:
    """A LiveCall rebuilt from its checkpoint (no audio state: that restarts)."""
    call = LiveCall(
        tenant=doc["tenant"],
        call_id=doc["call_id"],
        started_at=datetime.fromisoformat(doc["started_at"]),
        agent_id=doc.get("agent_id"),
        direction=doc.get("direction") or "inbound",
        caller=doc.get("caller"),
        callee=doc.get("callee"),
        legs_info=tuple(LegInfo.model_validate(li) for li in doc.get("legs", [])),
        language=doc.get("language"),
        leg_languages=dict(doc.get("leg_languages") or {}),
        known=bool(doc.get("known")),
        record=bool(doc.get("record")),
    )
    for u in doc.get("finals", []):
        utt = Utterance(
            tenant=call.tenant,
            call_id=call.call_id,
            **{k: v for k, v in u.items() if k not in ("tenant", "call_id")},
        )
        call.finals[utt.utterance_id] = utt
    call.presses = [DtmfReceived.model_validate(p) for p in doc.get("dtmf", [])]
    return call


def load_parts(store: ObjectStore, call: LiveCall) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Every stored audio part of the call, per leg, in time order."""
    prefix = call.prefix_key(PARTS_DIR)
    parts: dict[str, list[tuple[int, np.ndarray]]] = {}
    for info in store.list(prefix):
        name = info.key[len(prefix) :]
        leg, _, rest = name.partition("-")
        if leg not in LEGS or not rest.endswith(".pcm"):
            continue
        start = int(rest[: -len(".pcm")])
        pcm = np.frombuffer(store.get(info.key), dtype="<i2")
        parts.setdefault(leg, []).append((start, pcm))
    for v in parts.values():
        v.sort(key=lambda p: p[0])
    return parts


def assemble(parts: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """One leg's audio from positioned parts (gaps silent, overlaps: the later part wins)."""
    if not parts:
        return np.zeros(0, dtype=np.float32)
    n = max(s + len(p) for s, p in parts)
    out = np.zeros(n, dtype=np.int16)
    for s, p in parts:
        out[s : s + len(p)] = p
    return out.astype(np.float32) / 32768.0


def delete_live_objects(store: ObjectStore, call: LiveCall) -> None:
    """Remove the checkpoint and audio parts once the artifacts are written."""
    for info in list(store.list(call.prefix_key(PARTS_DIR))):
        store.delete(info.key)
    store.delete(call.prefix_key(CHECKPOINT_NAME))


def ensure_manifest(store: ObjectStore, call: LiveCall) -> CallManifest:
    """The call's manifest, created with status `live` when it has none yet."""
    return ensure_live_manifest(store, call.tenant, call.call_id, call.started_at, **call.who())


def provisional_start(chunk: MediaChunk) -> datetime:
    """Call start guessed from a chunk when call.started was not seen (yet)."""
    return datetime.fromtimestamp(chunk.arrival - chunk.start, UTC)
