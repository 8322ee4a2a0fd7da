"""Settings: one object, read from `CALLPIPE_*` env vars, built once and passed down.

Nested sections use a double underscore: `CALLPIPE_KAFKA__BOOTSTRAP=host:9092`.
Settings fixed at start (device, threads) live here; what a call may change
(language, voice rate) travels in requests and events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    """Kafka connection for distributed mode."""

    bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(default=6, ge=1)
    client_id: str = "callpipe"
    replication_factor: int = Field(default=1, ge=1)
    # 6 s is the smallest session Apache Kafka accepts by default; tansu also holds a
    # group join for about half of it, so smaller values make joins faster there.
    session_timeout_ms: int = Field(default=6_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)  # a long batch transcription
    metadata_max_age_ms: int = Field(default=30_000, ge=1_000)
    fetch_max_wait_ms: int = Field(default=100, ge=0)
    linger_ms: int = Field(default=5, ge=0)
    poll_timeout_ms: int = 200
    # How long an API request waits for the broker to take a job (an upload) before it
    # answers 503: a broker restarting within it is ridden out.
    publish_timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _heartbeat(self) -> KafkaSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("kafka.heartbeat_interval_ms must be below kafka.session_timeout_ms")
        return self


class S3Settings(BaseModel):
    """MinIO / S3 endpoint for distributed mode."""

    endpoint: str = "127.0.0.1:9000"
    access_key: str = "minioadmin"
    secret_key: str = "minioadmin"
    bucket: str = "callpipe"
    secure: bool = False
    region: str = "us-east-1"


class DatabaseSettings(BaseModel):
    """Where the relational stores live (API keys, transcript index, prompter, robot)."""

    # None: SQLite files under the data dir (one process, or processes of one machine).
    # postgresql://user:password@host:5432/name: one database every host shares.
    url: str | None = None
    pool_size: int = Field(default=8, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("database.url must be a postgresql:// URL (unset: SQLite files)")
        return v


class SttSettings(BaseModel):
    """Whisper and VAD options fixed at start."""

    model: str = "base"  # base | small | a folder holding a CTranslate2 Whisper model
    compute_type: str = "int8"
    # Each decode runs on `cpu_threads` threads, and `workers` decodes run at once (the legs
    # of a recording; live finals beside live partials). On two cores two one-thread decodes
    # do much more than one two-thread decode (bench/decode_speed.py).
    cpu_threads: int = Field(default=1, ge=1)
    workers: int = Field(default=2, ge=1)
    beam_size: int = Field(default=5, ge=1)
    language: str | None = None  # None: detect per recording / per live leg
    # Languages per tenant, used when a call or upload names none (before `language`).
    tenant_languages: dict[str, str] = Field(default_factory=dict)
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)  # webrtcvad (robot barge-in)
    # Batch: Silero VAD keeps this much audio after speech and `batch_onset_pad_ms` before
    # it, so a pause is cut to at most their sum; pauses shorter than
    # min_silence_duration_ms are kept whole. Before speech it reaches back to
    # `batch_onset_reach_ms` where the audio there is `batch_onset_margin_db` over the
    # channel's floor: Silero hears a soft first word late. 800 ms everywhere read the
    # English sets better but the real French voice worse (docs/benchmarks.md).
    batch_pad_ms: int = Field(default=500, ge=0)
    batch_onset_pad_ms: int = Field(default=500, ge=0)
    batch_onset_reach_ms: int = Field(default=800, ge=0)
    batch_onset_margin_db: float = Field(default=10.0, ge=0)
    min_silence_duration_ms: int = Field(default=500, ge=0)
    speech_pad_ms: int = Field(default=200, ge=0)  # live: silence kept after speech
    # live: audio kept before an utterance's first speech frame. Silero hears a soft first
    # word late, more so after a silence that follows speech: 500 ms cut the start off 32
    # of the corpus's 297 turns ("Oh", "Alright", "Merci", "Veuillez"), 800 ms 8 of them,
    # and 800 ms read better on every set (docs/benchmarks.md, "Where a turn starts").
    onset_pad_ms: int = Field(default=800, ge=0)
    no_speech_threshold: float = 0.6
    min_word_probability: float = 0.0
    # A mono (mixed) recording's two voices told apart and named agent and customer
    # (stt/speakers.py); off: one speaker, `mono`.
    split_mono: bool = True
    # Live finals are decoded in a window of at least this many seconds: shorter windows
    # misread short answers (see stt/live_decoder.py), and on unfamiliar voices 3 s read
    # 1-4 WER points worse than 8 s (docs/benchmarks.md).
    final_min_window_s: float = Field(default=8.0, ge=0, le=30)

    def language_for(self, tenant: str, requested: str | None = None) -> str | None:
        """The language a call or recording is decoded in: the one asked for, else the
        tenant's, else the deployment's (None: detected)."""
        return requested or self.tenant_languages.get(tenant) or self.language


class LiveSettings(BaseModel):
    """Live calls: RTP ports, jitter buffer, streaming endpointing."""

    rtp_host: str = "127.0.0.1"
    advertise_host: str | None = None
    rtp_port_min: int = 20000
    rtp_port_max: int = 22000
    jitter_ms: int = Field(default=60, ge=0)
    batch_ms: int = Field(default=160, ge=20, le=1000)
    rtp_timeout_s: float = Field(default=60.0, gt=0)
    max_call_s: float = Field(default=4 * 3600, gt=0)
    max_packets_per_s: int = Field(default=400, gt=0)
    dtmf_payload_type: int = Field(default=101, ge=96, le=127)  # RFC 4733 telephone-event
    hangover_ms: int = Field(default=500, ge=100)
    min_speech_ms: int = Field(default=200, ge=0)
    max_utterance_s: float = Field(default=15.0, gt=1.0)
    # The most speech between two partial passes (with 160 ms media batches: one every
    # 0.96 s). Fewer passes leave Whisper free for the finals sooner.
    partial_interval_s: float = Field(default=1.0, gt=0.1)
    # Which frames are speech: Silero VAD (music, tones and line noise are not) or webrtcvad.
    vad: Literal["silero", "webrtc"] = "silero"
    # A final as soon as the pass decoded in the first 200 ms of silence ends a sentence.
    # Off: cutting a turn at each sentence leaves Whisper short clips without their context
    # ("Good afternoon." read "Don't have to move."), 2-7 WER points on unfamiliar voices.
    early_final: bool = False
    # A partial on every pass that hears something new (the confirmed words, then the rest
    # as `tentative`), not only when words are confirmed.
    tentative_partials: bool = True
    # Beam of live finals (partial passes are greedy). On the latency benchmark's calls
    # greedy finals read 7.0 % WER against 3.9 % with beam 5 (bench/live_wer.py).
    beam_size: int = Field(default=5, ge=1)
    # Endpointing: frames within this many dB of the line's noise floor are silence (None:
    # webrtcvad alone, which hears ~100 ms of a sentence's fade as speech).
    vad_noise_margin_db: float | None = Field(default=8.0, ge=0)
    # Keep a live call's legs as a two-channel recording, then transcribe it in batch as an
    # upload is: opt-in (recording a call needs its parties told), per call (`record`)
    # or per tenant, else this.
    record: bool = False
    tenant_record: dict[str, bool] = Field(default_factory=dict)

    def record_for(self, tenant: str, requested: bool | None = None) -> bool:
        """Whether a live call is kept as a recording: asked for, else its tenant's, else
        the deployment's."""
        if requested is not None:
            return requested
        return self.tenant_record.get(tenant, self.record)

    @model_validator(mode="after")
    def _range(self) -> LiveSettings:
        if self.rtp_port_min > self.rtp_port_max:
            raise ValueError("live.rtp_port_min must not exceed live.rtp_port_max")
        return self


class StreamSettings(BaseModel):
    """Media over WebSocket (/v1/media/twilio, /v1/media/l16) and AudioSocket."""

    # A connection must say which call it carries (Twilio `start`, the L16 metadata frame,
    # AudioSocket's UUID) within this long.
    start_timeout_s: float = Field(default=10.0, gt=0)
    # The largest frame taken: a Twilio media message is ~300 bytes, an L16 frame a few KB.
    max_message_bytes: int = Field(default=65_536, ge=1024)
    # A peer that takes none of the audio played back to it for this long is closed.
    send_timeout_s: float = Field(default=5.0, gt=0)
    # Audio queued to play back to one peer at most (a prompt longer is refused).
    max_playback_s: float = Field(default=300.0, gt=0)


class AudioSocketSettings(BaseModel):
    """Asterisk AudioSocket (TCP): where callpipe listens for it."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9099, ge=0, le=65535)  # 0: any free port (printed at start)
    # The tenant of connections whose UUID no POST /v1/calls registered (None: refused;
    # a UUID alone proves nothing, so only set this on a network only the PBX reaches).
    tenant: str | None = None


class TtsSettings(BaseModel):
    """Piper voice and prompt rendering."""

    voice: str | None = None  # path to a .onnx voice; None: the packaged en_US-joe-medium
    default_rate: float = Field(default=1.0, gt=0.25, le=4.0)
    max_text_chars: int = Field(default=5000, gt=0)
    ivr_session_ttl_s: float = Field(default=900.0, gt=0)


class RetentionSettings(BaseModel):
    """How long artifacts live; per-tenant overrides in days."""

    days: int = Field(default=90, ge=1)
    per_tenant_days: dict[str, int] = Field(default_factory=dict)
    sweep_interval_s: float = Field(default=3600.0, gt=0)


class RobotSettings(BaseModel):
    """Voicebot sessions and the outbound compliance guard."""

    max_session_s: float = Field(default=600.0, gt=0)
    no_input_timeout_s: float = Field(default=6.0, gt=0)
    campaign_concurrency: int = Field(default=4, ge=1)
    timezone: str = "Europe/Paris"
    # End of the caller's turn for the recogniser (shorter than live calls: a bot must reply).
    hangover_ms: int = Field(default=400, ge=100)
    # Audio kept before an answer's first speech frame. Not the live calls' 800 ms: in the
    # robot's 3 s greedy window that much quiet before a one-word answer left espeak-ng's
    # "Tomorrow." unheard (no input) in every session of bench/voicebot.py.
    onset_pad_ms: int = Field(default=500, ge=0)
    # Every pass of a robot session may decide an answer: decoded greedily in a window of at
    # least this many seconds (short answers are misread in shorter windows).
    decode_window_s: float = Field(default=3.0, ge=0, le=30)
    # Barge-in VAD: speech this long stops a prompt; silence this long ends the caller's turn.
    barge_in_min_speech_ms: int = Field(default=90, ge=30)
    barge_in_silence_ms: int = Field(default=300, ge=60)
    # Mean Whisper word probability below which a turn is noise, not an answer: a cough
    # comes out as "I'm" or "Oh" at 0.02-0.09; real short answers measured 0.19-0.85
    # ("Tomorrow." is the lowest, at 0.19-0.65).
    min_answer_confidence: float = Field(default=0.12, ge=0, le=1)
    campaign_retry_s: float = Field(default=1800.0, gt=0)  # busy / no answer: try again after
    campaign_attempts: int = Field(default=3, ge=1)
    # The PBX's originate hook for campaigns: POST {tenant, call_id, callee, caller_id} ->
    # {status: answered|busy|no_answer|failed, media: {host, port, codec}}. None: no campaigns.
    dialer_url: str | None = None
    # A voicebot answering over a stream (Twilio, AudioSocket) waits this long for the PBX
    # to open it; then the session ends with outcome `no_media`.
    media_wait_s: float = Field(default=30.0, gt=0)


class PrompterSettings(BaseModel):
    """The souffleur: rule matching budgets, knowledge-base threshold, hint delivery."""

    regex_timeout_ms: int = Field(default=20, ge=1)  # per regex match at run time
    regex_probe_budget_ms: int = Field(default=100, ge=1)  # per regex when validating
    default_cooldown_s: float = Field(default=30.0, ge=0)
    max_rules: int = Field(default=5000, ge=1)
    max_playbook_kb: int = Field(default=1024, ge=1)
    kb_threshold: float = Field(default=2.5, ge=0)
    kb_min_terms: int = Field(default=2, ge=1)
    kb_cooldown_s: float = Field(default=120.0, ge=0)
    ws_queue_size: int = Field(default=64, ge=1)
    ws_send_timeout_s: float = Field(default=5.0, gt=0)
    history_per_agent: int = Field(default=200, ge=1)


AudioMask = Literal["off", "silence", "tone"]


class RedactionSettings(BaseModel):
    """Personal data masked in transcripts before they are stored, indexed or shown
    (recordings/redaction.py): for every tenant, or for the tenants listed."""

    enabled: bool = False
    tenants: list[str] = Field(default_factory=list)
    # The recording's audio over the masked words (recordings/audio_masks.py): silenced,
    # a tone, or kept as it was ("off").
    audio: AudioMask = "silence"
    audio_pad_s: float = Field(default=0.3, ge=0, le=2)

    def applies_to(self, tenant: str) -> bool:
        """Whether this tenant's transcripts are redacted."""
        return self.enabled or tenant in self.tenants


class WebhookSettings(BaseModel):
    """Deliveries to the tenants' webhooks (pipeline/webhooks)."""

    timeout_s: float = Field(default=5.0, gt=0)  # per attempt
    # Attempt n+1 waits base_delay_s * 2**(n-1), at most max_delay_s: with the defaults,
    # 10 attempts over about 36 minutes.
    max_attempts: int = Field(default=10, ge=1)
    base_delay_s: float = Field(default=5.0, gt=0)
    max_delay_s: float = Field(default=900.0, gt=0)
    poll_s: float = Field(default=0.5, gt=0)
    senders: int = Field(default=4, ge=1)
    # Let webhooks post inside the deployment's own network (loopback, private ranges):
    # off, so that a tenant's admin cannot make callpipe call its neighbours.
    allow_private: bool = False


class Settings(BaseSettings):
    """Everything callpipe reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="CALLPIPE_", env_nested_delimiter="__", extra="ignore"
    )

    mode: Literal["embedded", "distributed"] = "embedded"
    data_dir: Path = Path("./data")
    model_cache: Path = Path.home() / ".cache" / "callpipe" / "models"
    topic_prefix: str = "callpipe."
    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_mb: float = Field(default=200.0, gt=0)
    # The longest recording accepted (checked on the file's header before any decoding).
    max_recording_s: float = Field(default=4 * 3600.0, gt=0)
    auth_enabled: bool = True
    # /metrics needs an admin key; series carry no tenant label unless this is on.
    metrics_tenant_labels: bool = False
    log_level: str = "INFO"
    default_tenant: str = "default"

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    stt: SttSettings = Field(default_factory=SttSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    audiosocket: AudioSocketSettings = Field(default_factory=AudioSocketSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    robot: RobotSettings = Field(default_factory=RobotSettings)
    prompter: PrompterSettings = Field(default_factory=PrompterSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not all(c.isalnum() or c in "._-" for c in v):
            raise ValueError("topic_prefix may hold only letters, digits, '.', '_' and '-'")
        return v

    def retention_days(self, tenant: str) -> int:
        """Retention for one tenant, falling back to the default."""
        return self.retention.per_tenant_days.get(tenant, self.retention.days)
