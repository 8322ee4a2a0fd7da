"""Every event callpipe sends or receives: one schema, one place.

JSON events are frozen pydantic models with a version `v`, a `type`, a `tenant` and a
`call_id`. Media is binary (`MediaChunk`): a JSON header then raw int16 PCM.
Times inside a call are seconds from call start; wall-clock times are UTC.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

Leg = Literal["agent", "customer", "mono"]
Direction = Literal["inbound", "outbound", "internal"]


def utcnow() -> datetime:
    """Timezone-aware UTC now (every wall-clock time in events is UTC)."""
    return datetime.now(UTC)


class EventError(ValueError):
    """A message that is not a valid event; the reason says why."""


class Event(BaseModel):
    """Base of every JSON event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    type: str
    tenant: str = Field(min_length=1, max_length=64)
    call_id: str = Field(min_length=1, max_length=128)

    def encode(self) -> bytes:
        """JSON bytes as sent on the bus."""
        return self.model_dump_json().encode()

    @property
    def key(self) -> str:
        """Bus key: events of one call stay in order on one partition."""
        return self.call_id


# --- calls -----------------------------------------------------------------------------


class CallDetails(BaseModel):
    """Who and when a call is: what every record of a call carries, written once here.

    call.started, recording.ready and the call's manifest (pipeline/catalog.py) are made of
    it, and `details()` carries them from one record of the call to the next.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant: str = Field(min_length=1, max_length=64)
    call_id: str = Field(min_length=1, max_length=128)
    started_at: datetime = Field(default_factory=utcnow)
    agent_id: str | None = None
    direction: Direction = "inbound"
    caller: str | None = None
    callee: str | None = None
    # What the call is spoken in (ISO 639-1, as Whisper names languages); None: detected
    # on each leg's first speech, then held.
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")

    @field_validator("direction", mode="before")
    @classmethod
    def _direction(cls, v: object) -> object:
        # Records written before the direction was always set hold null: an inbound call.
        return "inbound" if v is None else v

    def details(self) -> dict[str, Any]:
        """These fields alone, to make another record of the same call."""
        return {name: getattr(self, name) for name in CallDetails.model_fields}


Transport = Literal["rtp", "twilio", "l16", "audiosocket"]


class LegInfo(BaseModel):
    """One forked leg of a call and the codec the PBX sends on it."""

    model_config = ConfigDict(frozen=True)

    leg: Literal["agent", "customer"]
    codec: str = "PCMU"  # PCMU | PCMA | opus | L16 (L16: WebSocket and AudioSocket only)
    payload_type: int | None = None  # dynamic type for Opus; ignored for PCMU/PCMA
    # RFC 4733 telephone-event type as negotiated for this leg (None: live.dtmf_payload_type)
    dtmf_payload_type: int | None = Field(default=None, ge=96, le=127)
    sample_rate: int | None = None  # L16's (8000 or 16000); the others have their own
    # The id a stream transport names this leg by when it connects (AudioSocket's UUID).
    stream_id: str | None = Field(default=None, max_length=64)


class CallStarted(Event, CallDetails):
    """A call began; its legs will be forked to callpipe."""

    type: Literal["call.started"] = "call.started"
    legs: tuple[LegInfo, ...] = ()
    transport: Transport = "rtp"  # how the PBX forks the media to callpipe
    # Keep the call as a recording, transcribed in batch after it (None: the tenant's
    # choice, live.tenant_record, else live.record).
    record: bool | None = None


class CallEnded(Event):
    """A call ended (hang-up, RTP timeout or maximum duration)."""

    type: Literal["call.ended"] = "call.ended"
    ended_at: datetime = Field(default_factory=utcnow)
    reason: str = "hangup"


class DtmfReceived(Event):
    """An RFC 4733 telephone-event digit, once per key press."""

    type: Literal["dtmf"] = "dtmf"
    leg: Leg
    digit: str = Field(pattern=r"^[0-9*#A-D]$")
    start: float
    duration: float


# --- recordings and transcripts --------------------------------------------------------


class RecordingReady(Event, CallDetails):
    """A finished recording is in the store and waits for batch transcription."""

    type: Literal["recording.ready"] = "recording.ready"
    uri: str
    channels: dict[str, Literal["agent", "customer"]] | Literal["mono"] = "mono"


class Word(BaseModel):
    """One recognised word with its time span (seconds from call start)."""

    model_config = ConfigDict(frozen=True)

    word: str
    start: float
    end: float
    probability: float


def utterance_id(call_id: str, leg: str, start_sample: int) -> str:
    """Deterministic id: a replay overwrites instead of duplicating."""
    digest = hashlib.sha1(f"{call_id}|{leg}|{start_sample}".encode()).hexdigest()[:16]
    return f"u-{digest}"


class Utterance(Event):
    """What one leg said between two pauses; partial while it is still being said."""

    type: Literal["utterance"] = "utterance"
    leg: Leg
    utterance_id: str
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    final: bool = True
    language: str | None = None
    source: Literal["live", "batch"] = "batch"
    revision: int = 0  # partials of one utterance count up; the final is the last
    # Partials: the words after `text` that the last pass heard but not yet twice (they may
    # change in the next partial); a UI shows them apart. Empty in finals.
    tentative: str = ""


class TranscriptReady(Event):
    """A call's transcript artifacts are written to the store."""

    type: Literal["transcript.ready"] = "transcript.ready"
    json_uri: str
    vtt_uri: str
    utterances: int
    source: Literal["live", "batch"] = "batch"
    duration: float = 0.0
    language: str | None = None
    # The call's statistics as named numbers (recordings/call_stats.py `facts`) and the
    # categories it met: what the index keeps for search filters.
    facts: dict[str, float] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()


# --- souffleur ------------------------------------------------------------------------


class HintTrigger(BaseModel):
    """What made a hint fire."""

    model_config = ConfigDict(frozen=True)

    utterance_id: str | None = None
    matched: str | None = None
    rule: str | None = None


class Hint(Event):
    """Something for the agent to see now."""

    type: Literal["hint"] = "hint"
    agent_id: str | None = None
    hint_id: str
    kind: Literal["script", "compliance", "knowledge", "alert"]
    title: str
    text: str
    priority: int = 0
    trigger: HintTrigger = Field(default_factory=HintTrigger)
    created_at: datetime = Field(default_factory=utcnow)


# --- robot ----------------------------------------------------------------------------


class MediaPeer(BaseModel):
    """Where the robot's voice goes: RTP to a host and port, or back over the call's own
    bidirectional stream (Twilio, AudioSocket), which connects with the call's id."""

    model_config = ConfigDict(frozen=True)

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    codec: Literal["PCMU", "PCMA"] = "PCMU"
    transport: Literal["rtp", "twilio", "audiosocket"] = "rtp"

    @model_validator(mode="after")
    def _address(self) -> MediaPeer:
        if self.transport == "rtp" and (self.host is None or self.port is None):
            raise ValueError("RTP media needs a host and a port")
        if self.transport != "rtp" and self.codec != "PCMU":
            raise ValueError(f"{self.transport} media is PCMU")
        return self


class RobotStart(Event):
    """Command: run a scenario on a call."""

    type: Literal["robot.start"] = "robot.start"
    scenario: str
    variables: dict[str, Any] = Field(default_factory=dict)
    media: MediaPeer | None = None
    callee: str | None = None
    caller_id: str | None = None
    sector: str | None = None
    campaign_id: str | None = None


class RobotStep(Event):
    """The robot entered a step, said something or heard an answer."""

    type: Literal["robot.step"] = "robot.step"
    step: str
    action: str
    text: str | None = None
    answer: Any = None
    at: float = 0.0


class RobotOutcome(Event):
    """How a robot session ended."""

    type: Literal["robot.outcome"] = "robot.outcome"
    result: str
    slots: dict[str, Any] = Field(default_factory=dict)
    transcript: tuple[dict[str, Any], ...] = ()
    duration: float = 0.0


class RobotRefused(Event):
    """The compliance guard refused an automated call; `rule` names why."""

    type: Literal["robot.refused"] = "robot.refused"
    rule: str
    reason: str
    callee: str | None = None
    campaign_id: str | None = None


# --- dead letters ---------------------------------------------------------------------


class DeadLetter(BaseModel):
    """A message a worker could not process, with the reason; keyed as the original."""

    model_config = ConfigDict(frozen=True)

    v: int = 1
    type: Literal["deadletter"] = "deadletter"
    tenant: str | None = None
    topic: str
    partition: int
    offset: int
    key: str | None = None
    reason: str
    worker: str
    payload: str | None = None  # the original JSON text, or base64 of binary (if small)
    payload_ref: str | None = None  # a pointer when the payload was too large to copy
    at: datetime = Field(default_factory=utcnow)

    def encode(self) -> bytes:
        """JSON bytes as sent on the bus."""
        return self.model_dump_json().encode()


AnyEvent = Annotated[
    CallStarted
    | CallEnded
    | DtmfReceived
    | RecordingReady
    | Utterance
    | TranscriptReady
    | Hint
    | RobotStart
    | RobotStep
    | RobotOutcome
    | RobotRefused,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)


def decode_event(data: bytes) -> Event:
    """Parse a JSON event; raises EventError with the reason when it is not one."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise EventError("event is not a JSON object")
    if raw.get("v", 1) != 1:
        raise EventError(f"unsupported event version {raw.get('v')!r}")
    try:
        event: Event = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        raise EventError(f"invalid event at {where}: {first['msg']}") from exc
    return event


# --- media (binary) -------------------------------------------------------------------

_LEN = struct.Struct(">I")


class MediaChunk(BaseModel):
    """~100-200 ms of one leg's decoded audio (int16 PCM, mono) with its RTP bookkeeping."""

    model_config = ConfigDict(frozen=True)

    v: int = 1
    type: Literal["media"] = "media"
    tenant: str
    call_id: str
    leg: Literal["agent", "customer"]
    codec: str  # what was on the wire: PCMU, PCMA, opus
    sample_rate: int  # of `pcm`: 8000 for G.711, 16000 for Opus
    start_sample: int  # position of the first sample from call start, at sample_rate
    seq_first: int
    seq_last: int
    ts_first: int
    ts_last: int
    arrival: float  # wall-clock UNIX time the newest packet arrived
    concealed: int = 0  # packets concealed (lost) in this chunk
    pcm: bytes = b""

    @property
    def key(self) -> str:
        """Bus key: a call's media stays on one partition."""
        return self.call_id

    @property
    def start(self) -> float:
        """Seconds from call start."""
        return self.start_sample / self.sample_rate

    def encode(self) -> bytes:
        """Length-prefixed JSON header, then the raw PCM."""
        header = self.model_dump_json(exclude={"pcm"}).encode()
        return _LEN.pack(len(header)) + header + self.pcm


def decode_media(data: bytes) -> MediaChunk:
    """Parse a media message; raises EventError with the reason when malformed."""
    if len(data) < _LEN.size:
        raise EventError("media message shorter than its length prefix")
    (n,) = _LEN.unpack_from(data)
    if n > len(data) - _LEN.size:
        raise EventError("media header length exceeds the message")
    try:
        header = json.loads(data[_LEN.size : _LEN.size + n])
        chunk = MediaChunk.model_validate({**header, "pcm": data[_LEN.size + n :]})
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise EventError(f"invalid media header: {exc}") from exc
    if len(chunk.pcm) % 2:
        raise EventError("media payload is not whole int16 samples")
    return chunk
