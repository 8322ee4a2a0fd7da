"""A robot session: one scenario run over a bidirectional media session.

Out: prompts synthesised and sent as RTP (PCMU/PCMA, 20 ms, paced in real time by the
`PromptPlayer` thread), or back over the call's own bidirectional stream (`StreamPlayer`:
Twilio Media Streams, AudioSocket) once the PBX has opened it. In: the caller's audio
through the same ingest as live calls (the session registers a call with a `customer`
leg, for RTP or for the stream to join); the process's `MediaTap` hands this call's
decoded chunks and DTMF to the session, whatever the transport. Every chunk feeds a short
barge-in VAD (webrtcvad via `stt.vad.Endpointer`) and the streaming recogniser
(`stt.streaming`).

The streaming recogniser is used directly, in a thread of the session, rather than
through the live worker: the worker is a consumer group whose utterances come back on
the `transcripts` topic, keyed by call, with no way to ask it for this call's next answer;
a request/response loop needs the recogniser in hand. Whisper itself is the process's
one model (`live_decoder_of`), shared with the live worker.

Threads per session: control (the dialog engine's inputs and commands), STT (decoding),
RTP sender; the tap's thread does the VAD. Every session ends: the engine hangs up at the
maximum duration, and the control loop enforces it again should the engine not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from pipeline.events import (
    CallEnded,
    CallStarted,
    DtmfReceived,
    LegInfo,
    MediaChunk,
    RobotOutcome,
    RobotStart,
    RobotStep,
)
from pipeline.ingest.audiosocket import canonical_uuid
from pipeline.ingest.receiver import Endpoint, MediaStream, RtpIngest, ingest_of
from pipeline.logs import ctx
from pipeline.services import Services
from robot.dialog import (
    Command,
    DialogEngine,
    Dtmf,
    Emit,
    Final,
    Input,
    Partial,
    PeerGone,
    Play,
    PromptFinished,
    SpeechStarted,
    SpeechStopped,
    Started,
    StopPlayback,
    Tick,
)
from robot.media_tap import media_tap
from robot.player import PromptPlayer, StreamPlayer
from robot.prompts import PromptAudio
from robot.scenario import Scenario, placeholders, render
from stt.decode_queue import DecodeQueueClosed
from stt.live_call import LegAudio
from stt.live_decoder import streaming_options
from stt.streaming import ClipDecoder, Hypothesis, StreamingOptions, StreamingRecognizer
from stt.vad import Endpointer, SpeechEnded, VadOptions
from stt.vad import SpeechStarted as VadStarted

log = logging.getLogger(__name__)

TICK_S = 0.05
_GRACE_S = 5.0  # the control loop's own bound beyond the engine's maximum duration

EventSink = Callable[[RobotStep | RobotOutcome], None]


def robot_streaming_options(services: Services) -> StreamingOptions:
    """The live recogniser's options, as a robot session hears answers: its own (shorter)
    hangover and pre-roll, each answer's final pass once the whole padding is heard (as
    measured for the robot), and neither early finals, the noise margin nor tentative words."""
    return replace(
        streaming_options(services.settings),
        hangover_ms=services.settings.robot.hangover_ms,
        onset_pad_ms=services.settings.robot.onset_pad_ms,
        final_pass_silence_ms=services.settings.stt.speech_pad_ms,
        early_final=False,
        noise_margin_db=None,
        tentative_partials=False,
    )


def barge_in_options(services: Services) -> VadOptions:
    """The barge-in VAD: quick to say "speaking", quick to say "stopped"."""
    r = services.settings.robot
    return VadOptions(
        model="webrtc",  # 20 ms frames: a prompt stops within 100 ms of the caller's voice
        aggressiveness=services.settings.stt.vad_aggressiveness,
        frame_ms=20,
        min_speech_duration_ms=r.barge_in_min_speech_ms,
        min_silence_duration_ms=r.barge_in_silence_ms,
        speech_pad_ms=0,
        max_speech_duration_s=60.0,
    )


def confidence(h: Hypothesis) -> float:
    """How surely Whisper heard a hypothesis: the mean probability of its words."""
    return float(np.mean([w.probability for w in h.words])) if h.words else 0.0


class RobotSession:
    """One call: open() registers the media, start() runs the dialog in threads."""

    def __init__(
        self,
        services: Services,
        start: RobotStart,
        scenario: Scenario,
        *,
        prompts: PromptAudio,
        decoder: ClipDecoder,
        on_event: EventSink,
        on_packet: Callable[[int, float], None] | None = None,
    ) -> None:
        if start.media is None:
            raise ValueError("a robot session needs a media peer (host, port, codec)")
        self.services = services
        self.request = start
        self.tenant, self.call_id = start.tenant, start.call_id
        self.scenario = scenario
        self.prompts = prompts
        self.decoder = decoder
        self.on_event = on_event
        self.on_packet = on_packet
        settings = services.settings
        tz = ZoneInfo(settings.robot.timezone)
        self.engine = DialogEngine(
            scenario,
            dict(start.variables),
            self.tenant,
            self.call_id,
            no_input_timeout_s=settings.robot.no_input_timeout_s,
            max_duration_s=settings.robot.max_session_s,
            today=datetime.now(tz).date(),
            min_confidence=settings.robot.min_answer_confidence,
        )
        self.codec = start.media.codec
        self.transport = start.media.transport
        self.endpoint: Endpoint | None = None
        self.stream: MediaStream | None = None
        self.steps: list[dict[str, Any]] = []
        self.outcome: RobotOutcome | None = None
        self.status = "starting"
        self.started_at = datetime.now(UTC)
        # measurements (wall-clock UNIX times) for the API, tests and the benchmark
        self.barge_ins: list[tuple[float, float]] = []  # (speech detected, stop issued)
        self.speech_at = 0.0  # when the barge-in VAD last heard the caller start
        self._inputs: queue.Queue[Input] = queue.Queue()
        self._audio: queue.Queue[np.ndarray | None] = queue.Queue()
        self._vad = Endpointer(barge_in_options(services))
        self._leg = LegAudio()  # the caller's chunks as contiguous 16 kHz audio
        self._player: PromptPlayer | StreamPlayer | None = None
        self._ingest: RtpIngest | None = None
        self._ending = False
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> Endpoint | None:
        """Register the call with the ingest; returns where the caller's RTP must go (None
        for a stream transport: the PBX opens the stream naming the call)."""
        ingest = self._ingest = ingest_of(self.services)
        req = self.request
        assert req.media is not None
        if self.transport == "rtp":
            leg = LegInfo(leg="customer", codec=self.codec)
        elif self.transport == "audiosocket":
            try:
                sid = canonical_uuid(self.call_id)
            except ValueError:
                raise ValueError("an AudioSocket robot call's id must be a UUID") from None
            leg = LegInfo(leg="customer", codec="L16", sample_rate=8000, stream_id=sid)
        else:
            leg = LegInfo(leg="customer", codec="PCMU")
        started = CallStarted(
            tenant=self.tenant,
            call_id=self.call_id,
            direction="outbound" if req.callee else "inbound",
            caller=req.caller_id,
            callee=req.callee,
            legs=(leg,),
            transport=self.transport,
        )
        tap = media_tap(self.services)
        tap.subscribe(self.call_id, self._on_record)
        try:
            endpoints = ingest.register(started, via="robot")
        except Exception:
            tap.unsubscribe(self.call_id)
            raise
        if self.transport != "rtp":
            self.stream = ingest.stream(self.tenant, self.call_id)
            return None
        (self.endpoint,) = endpoints
        assert req.media.host is not None and req.media.port is not None
        self._player = PromptPlayer(
            req.media.host, req.media.port, self.codec, self._prompt_done, on_packet=self.on_packet
        )
        return self.endpoint

    def media_answer(self) -> dict[str, Any]:
        """Where the caller's media goes, for the API and the `media` step."""
        ep = self.endpoint
        if ep is not None:
            return {"host": ep.host, "port": ep.port, "codec": ep.codec}
        if self.transport == "audiosocket":
            return {"transport": "audiosocket", "uuid": canonical_uuid(self.call_id)}
        return {"transport": self.transport, "path": f"/v1/media/{self.transport}"}

    def start(self) -> None:
        """Run the dialog (control and STT threads; prompts rendered ahead in a third)."""
        self.status = "running"
        for target, name in (
            (self._control, "robot-control"),
            (self._stt, "robot-stt"),
            (self._prefetch, "robot-prefetch"),
        ):
            t = threading.Thread(target=target, name=f"{name}-{self.call_id}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the session ended; True if it did."""
        return self._done.wait(timeout_s)

    @property
    def done(self) -> bool:
        """The session ended and released its media."""
        return self._done.is_set()

    def hang_up(self, reason: str = "abandoned") -> None:
        """End the session from outside (API, shutdown)."""
        self._inputs.put(PeerGone(time.time(), reason))

    def _prefetch(self) -> None:
        """Render every prompt that needs no answer ahead, so steps follow without a gap."""
        values = dict(self.request.variables)
        lang = self.scenario.language
        try:
            for step in self.scenario.steps:
                for text in (step.say, step.ask, step.no_input.reprompt, step.no_match.reprompt):
                    if self._done.is_set():
                        return
                    if text and set(placeholders(text)) <= set(values):
                        self.prompts.render(render(text, values, lang), self.codec)
        except Exception:  # only an optimisation: the control thread renders on demand
            log.exception("prefetching prompts failed", **ctx(self.tenant, self.call_id))

    # -- media in (tap thread) ---------------------------------------------------------------
    def _on_record(self, rec: MediaChunk | DtmfReceived | CallEnded) -> None:
        now = time.time()
        if isinstance(rec, CallEnded):
            if not self._ending:
                self._inputs.put(PeerGone(now, "abandoned"))
            return
        if isinstance(rec, DtmfReceived):
            if rec.leg == "customer":
                self._inputs.put(Dtmf(rec.digit, now))
            return
        if rec.leg != "customer" or rec.sample_rate not in (8000, 16000):
            return
        # a jump over a long gap is not skipped: the recogniser hears the audio end to end
        pcm, _ = self._leg.feed(
            np.frombuffer(rec.pcm, dtype="<i2"), rec.start_sample, rec.sample_rate
        )
        if not len(pcm):
            return
        for ev in self._vad.feed(pcm):
            if isinstance(ev, VadStarted):
                self.speech_at = now
                self._inputs.put(SpeechStarted(now))
            elif isinstance(ev, SpeechEnded):
                self._inputs.put(SpeechStopped(now))
        self._audio.put(pcm)

    # -- STT thread ----------------------------------------------------------------------------
    def _stt(self) -> None:
        # The dialog acts on partials (barge-in, early answers): stable words only.
        options = robot_streaming_options(self.services)
        rec = StreamingRecognizer(options)
        language = self.scenario.language
        try:
            while not self._done.is_set():
                try:
                    first = self._audio.get(timeout=0.1)
                except queue.Empty:
                    continue
                if first is None:
                    break
                chunks = [first]
                while True:
                    try:
                        more = self._audio.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._done.set()
                        break
                    chunks.append(more)
                rec.insert_audio_chunk(np.concatenate(chunks))
                for h in rec.process_iter(self.decoder, language):
                    cls = Final if h.final else Partial
                    self._inputs.put(cls(h.text, h.start, time.time(), confidence(h)))
        except DecodeQueueClosed:  # the process is stopping: not a failure of this session
            log.info("robot STT stopped: the decode queue closed", **ctx(self.tenant, self.call_id))
        except Exception:  # decoding trouble ends this session's hearing, not the process
            log.exception("robot STT failed", **ctx(self.tenant, self.call_id))
            self.services.metrics.inc("robot_stt_errors_total")

    # -- control thread ----------------------------------------------------------------------
    def _prompt_done(self, token: int, at: float) -> None:
        self._inputs.put(PromptFinished(token, at))

    def _control(self) -> None:
        engine = self.engine
        try:
            if self._player is None and not self._await_stream():
                return
            hard_stop = time.time() + engine.max_duration_s + _GRACE_S
            self._execute(engine.handle(Started(time.time())))
            while not engine.done:
                try:
                    inp: Input = self._inputs.get(timeout=TICK_S)
                except queue.Empty:
                    inp = Tick(time.time())
                if time.time() > hard_stop:
                    inp = PeerGone(time.time(), "max_duration")
                self._execute(engine.handle(inp))
        except Exception:  # a session bug ends this call, never the process
            log.exception("robot session failed", **ctx(self.tenant, self.call_id))
            self.services.metrics.inc("robot_session_errors_total")
            if not engine.done:
                self._execute(engine.handle(PeerGone(time.time(), "failed")))
        finally:
            self._close()

    def _await_stream(self) -> bool:
        """A stream transport: wait for the PBX to open the call's stream; False (the
        session ends, `no_media`) when it does not within robot.media_wait_s."""
        assert self.stream is not None
        outbound = self.stream.wait_outbound(self.services.settings.robot.media_wait_s)
        if outbound is None:
            log.warning("no %s stream came", self.transport, **ctx(self.tenant, self.call_id))
            self._execute(
                [Emit(RobotOutcome(tenant=self.tenant, call_id=self.call_id, result="no_media"))]
            )
            return False
        self._player = StreamPlayer(outbound, self._prompt_done)
        return True

    def _execute(self, commands: list[Command]) -> None:
        player = self._player
        for cmd in commands:
            if isinstance(cmd, Play):
                assert player is not None
                wire = self.prompts.render(cmd.text, self.codec)
                if wire:
                    player.play(cmd.token, wire)
                else:
                    self._inputs.put(PromptFinished(cmd.token, time.time()))
            elif isinstance(cmd, StopPlayback):
                assert player is not None
                player.stop(cmd.token)
                self.barge_ins.append((self.speech_at, time.time()))
            elif isinstance(cmd, Emit):
                ev = cmd.event
                if isinstance(ev, RobotStep):
                    self.steps.append(ev.model_dump(mode="json", exclude={"v", "tenant"}))
                else:
                    self.outcome = ev
                try:
                    self.on_event(ev)
                except Exception:  # a full bus must not stop the dialog
                    log.exception("publishing %s failed", ev.type, **ctx(self.tenant, self.call_id))

    def _close(self) -> None:
        self._ending = True
        media_tap(self.services).unsubscribe(self.call_id)
        if self._player is not None:
            self._player.close()
        self._audio.put(None)
        result = self.engine.result or (self.outcome.result if self.outcome else "failed")
        if self._ingest is not None:
            self._ingest.end(self.tenant, self.call_id, result)
        self.status = "ended"
        self.services.metrics.inc("robot_sessions_total", result=result)
        log.info("robot session ended: %s", result, **ctx(self.tenant, self.call_id))
        self._done.set()

    # -- view ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What GET /v1/robot/calls/{id} shows."""
        out = self.outcome
        return {
            "call_id": self.call_id,
            "tenant": self.tenant,
            "scenario": self.scenario.name,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "media": self.media_answer(),
            "step": self.engine.step.id if self.engine.step else None,
            "steps": self.steps[-200:],
            "slots": {
                k: (v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in self.engine.slots.items()
            },
            "transfer": (
                self.engine.transfer.model_dump(exclude_none=True) if self.engine.transfer else None
            ),
            "outcome": None
            if out is None
            else out.model_dump(mode="json", exclude={"v", "tenant"}),
        }
