"""The dialog engine: a scenario run as a pure state machine, testable without audio.

Inputs are what the media session observes (a prompt finished playing, the caller
started or stopped speaking, partial and final text, a DTMF key, the clock, the peer
hanging up); outputs are commands for the session (play a prompt, stop playback,
transfer, hang up) and the `robot.step` / `robot.outcome` events. Nothing here sleeps,
reads a clock or touches a socket: time comes in with every input.

Barge-in: when the caller starts speaking over an ask prompt (or a DTMF key comes),
playback is stopped and the answer taken. An answer recognised on a partial transcript
is acted on as soon as the caller stops speaking (the session's short VAD), without
waiting for the final transcript; the final of that utterance is then ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pipeline.events import RobotOutcome, RobotStep
from robot.answers import Answer, dtmf_answer, understand, yes_no
from robot.scenario import Scenario, Step, TransferTarget, render

# A turn the VAD never closes (a stuck stream) is given up after this long.
MAX_TURN_S = 30.0
_CONFIRM_KEYS = {"1": "yes", "2": "no"}


# --- inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The media session is up: begin the scenario."""

    at: float


@dataclass(frozen=True)
class PromptFinished:
    """The prompt `token` was played to its end."""

    token: int
    at: float


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started speaking (barge-in VAD)."""

    at: float


@dataclass(frozen=True)
class SpeechStopped:
    """The caller stopped speaking (barge-in VAD, short hangover)."""

    at: float


@dataclass(frozen=True)
class Partial:
    """Confirmed words so far of utterance `utterance` (confidence: mean word probability)."""

    text: str
    utterance: int
    at: float
    confidence: float = 1.0


@dataclass(frozen=True)
class Final:
    """The whole text of utterance `utterance` (confidence: mean word probability)."""

    text: str
    utterance: int
    at: float
    confidence: float = 1.0


@dataclass(frozen=True)
class Dtmf:
    """A key pressed on the caller's keypad."""

    digit: str
    at: float


@dataclass(frozen=True)
class Tick:
    """Time passes (no-input timeout, maximum duration)."""

    at: float


@dataclass(frozen=True)
class PeerGone:
    """The caller hung up or the media stopped for good."""

    at: float
    reason: str = "abandoned"


Input = (
    Started
    | PromptFinished
    | SpeechStarted
    | SpeechStopped
    | Partial
    | Final
    | Dtmf
    | Tick
    | PeerGone
)


# --- outputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    """Say `text` to the caller; report PromptFinished(token) at its end."""

    token: int
    text: str
    step: str
    barge_in: bool


@dataclass(frozen=True)
class StopPlayback:
    """Stop the prompt `token` now."""

    token: int


@dataclass(frozen=True)
class Transfer:
    """Hand the call to a human: a queue or a number."""

    target: TransferTarget


@dataclass(frozen=True)
class Hangup:
    """End the call with this outcome."""

    outcome: str


@dataclass(frozen=True)
class Emit:
    """An event for the `robot` topic."""

    event: RobotStep | RobotOutcome


Command = Play | StopPlayback | Transfer | Hangup | Emit


def jsonable(value: Any) -> Any:
    """Slot values as they go into events (dates as ISO strings)."""
    return value.isoformat() if isinstance(value, date) else value


@dataclass
class _Prompt:
    token: int
    kind: str  # say | ask | reprompt | confirm | final
    barge_in: bool


@dataclass
class DialogEngine:
    """One scenario run for one call; feed inputs with `handle`, execute what it returns."""

    scenario: Scenario
    variables: dict[str, Any]
    tenant: str
    call_id: str
    no_input_timeout_s: float = 6.0
    max_duration_s: float = 600.0
    today: date = field(default_factory=date.today)
    min_confidence: float = 0.0  # turns heard less surely than this are noise, not answers

    def __post_init__(self) -> None:
        if self.scenario.max_duration_s is not None:
            self.max_duration_s = min(self.max_duration_s, self.scenario.max_duration_s)
        self.slots: dict[str, Any] = {}
        self.transcript: list[dict[str, Any]] = []
        self.step: Step | None = None
        self.result: str | None = None
        self.transfer: TransferTarget | None = None
        self._t0: float | None = None
        self._token = 0
        self._prompt: _Prompt | None = None
        self._listening = False
        self._deadline: float | None = None
        self._hearing_since: float | None = None
        self._pending: tuple[Answer, int] | None = None
        self._consumed: set[int] = set()
        self._retries = {"no_input": 0, "no_match": 0}
        self._candidate: Answer | None = None
        self._digits = ""
        self._end: Transfer | Hangup | None = None
        self._out: list[Command] = []

    # -- public -----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """The dialog ended (outcome emitted)."""
        return self.result is not None

    @property
    def playing(self) -> int | None:
        """Token of the prompt being played, if any."""
        return self._prompt.token if self._prompt else None

    def handle(self, inp: Input) -> list[Command]:
        """Advance on one input; returns the commands to execute, in order."""
        self._out = []
        if self.done:
            return []
        if isinstance(inp, Started):
            self._t0 = inp.at
            self._enter(self.scenario.first, inp.at)
            return self._out
        if self._t0 is None:
            return []
        if inp.at - self._t0 >= self.max_duration_s and not isinstance(inp, PeerGone):
            self._finish(Hangup("max_duration"), inp.at, "max_duration")
            return self._out
        if isinstance(inp, PromptFinished):
            self._prompt_finished(inp)
        elif isinstance(inp, SpeechStarted):
            self._speech_started(inp.at)
        elif isinstance(inp, SpeechStopped):
            self._speech_stopped(inp.at)
        elif isinstance(inp, Partial):
            self._partial(inp)
        elif isinstance(inp, Final):
            self._final(inp)
        elif isinstance(inp, Dtmf):
            self._dtmf(inp)
        elif isinstance(inp, Tick):
            self._tick(inp.at)
        elif isinstance(inp, PeerGone):
            self._finish(Hangup(inp.reason), inp.at, inp.reason)
        return self._out

    # -- steps ------------------------------------------------------------------------------
    def _rel(self, at: float) -> float:
        return round(at - (self._t0 or at), 3)

    def _event(self, action: str, at: float, text: str | None = None, answer: Any = None) -> None:
        assert self.step is not None
        self._out.append(
            Emit(
                RobotStep(
                    tenant=self.tenant,
                    call_id=self.call_id,
                    step=self.step.id,
                    action=action,
                    text=text,
                    answer=jsonable(answer),
                    at=self._rel(at),
                )
            )
        )

    def _values(self) -> dict[str, Any]:
        return {**self.variables, **self.slots}

    def _enter(self, step_id: str | None, at: float) -> None:
        if step_id is None:
            self._finish(Hangup("completed"), at, "completed")
            return
        step = self.step = self.scenario.step(step_id)
        self._retries = {"no_input": 0, "no_match": 0}
        self._candidate = None
        self._pending = None
        self._digits = ""
        self._listening = False
        self._deadline = None
        self._event("enter", at)
        kind = step.kind
        if kind == "say":
            self._play(step.say or "", "say", at)
        elif kind == "ask":
            self._play(step.ask or "", "ask", at, listen=True)
        else:
            end: Transfer | Hangup = (
                Transfer(step.transfer)
                if step.transfer is not None
                else Hangup(step.hangup or "completed")
            )
            if step.say:
                self._end = end
                self._play(step.say, "final", at)
            else:
                self._finish(end, at, self._result_of(end))

    def _play(
        self,
        text: str,
        kind: str,
        at: float,
        *,
        listen: bool = False,
        values: dict[str, Any] | None = None,
    ) -> None:
        assert self.step is not None
        self._token += 1
        barge = kind in ("ask", "reprompt", "confirm") and self.step.barge_in
        self._prompt = _Prompt(self._token, kind, barge)
        said = render(text, values or self._values(), self.scenario.language)
        self.transcript.append(
            {"who": "robot", "step": self.step.id, "text": said, "at": self._rel(at)}
        )
        self._listening = listen or kind in ("reprompt", "confirm")
        self._deadline = None
        self._event("say", at, text=said)
        self._out.append(Play(self._token, said, self.step.id, barge))

    def _stop(self, at: float) -> None:
        if self._prompt is not None:
            self._out.append(StopPlayback(self._prompt.token))
            self._event("barge_in", at)
            self._prompt = None

    def _listen_from(self, at: float) -> None:
        assert self.step is not None
        timeout = self.step.timeout_s or self.no_input_timeout_s
        self._deadline = at + timeout

    @staticmethod
    def _result_of(end: Transfer | Hangup) -> str:
        return "transferred" if isinstance(end, Transfer) else end.outcome

    def _finish(self, end: Transfer | Hangup, at: float, result: str) -> None:
        if self._prompt is not None:
            self._out.append(StopPlayback(self._prompt.token))
            self._prompt = None
        self.result = result
        if isinstance(end, Transfer):
            self.transfer = end.target
            if self.step is not None:
                self._event("transfer", at, answer=end.target.model_dump(exclude_none=True))
        elif self.step is not None:
            self._event("hangup", at, text=end.outcome)
        self._out.append(end)
        self._out.append(
            Emit(
                RobotOutcome(
                    tenant=self.tenant,
                    call_id=self.call_id,
                    result=result,
                    slots={k: jsonable(v) for k, v in self.slots.items()},
                    transcript=tuple(self.transcript),
                    duration=self._rel(at),
                )
            )
        )

    # -- inputs -----------------------------------------------------------------------------
    def _prompt_finished(self, inp: PromptFinished) -> None:
        p = self._prompt
        if p is None or p.token != inp.token:
            return
        self._prompt = None
        assert self.step is not None
        if p.kind == "say":
            self._enter(self.scenario.after(self.step), inp.at)
        elif p.kind == "final":
            assert self._end is not None
            self._finish(self._end, inp.at, self._result_of(self._end))
        elif self._hearing_since is None:
            self._listen_from(inp.at)

    def _can_answer(self) -> bool:
        if self.step is None or self.step.kind != "ask" or not self._listening:
            return False
        return self._prompt is None or self._prompt.barge_in

    def _speech_started(self, at: float) -> None:
        self._hearing_since = at
        self._deadline = None
        if self._can_answer() and self._prompt is not None:
            self._stop(at)

    def _speech_stopped(self, at: float) -> None:
        self._hearing_since = None
        if not self._can_answer():
            return
        if self._pending is not None:
            ans, utt = self._pending
            self._commit(ans, utt, at)
        elif self._prompt is None:
            self._listen_from(at)

    def _heard(self, text: str, at: float) -> None:
        assert self.step is not None
        self.transcript.append(
            {"who": "caller", "step": self.step.id, "text": text, "at": self._rel(at)}
        )

    def _understand(self, text: str, partial: bool) -> Answer | None:
        assert self.step is not None
        if self._candidate is not None:
            v = yes_no(text, partial=partial)
            return None if v is None else Answer(v, text)
        return understand(self.step, text, self.today, self.scenario.language, partial=partial)

    def _partial(self, inp: Partial) -> None:
        if inp.utterance in self._consumed or not self._can_answer():
            return
        if inp.confidence < self.min_confidence:
            return
        if self._prompt is not None:
            self._stop(inp.at)  # words over the prompt: a barge-in the VAD missed
        ans = self._understand(inp.text, partial=True)
        if ans is None:
            return
        self._pending = (ans, inp.utterance)
        if self._hearing_since is None:
            self._commit(ans, inp.utterance, inp.at)

    def _final(self, inp: Final) -> None:
        if self.step is None:
            return
        if inp.utterance in self._consumed:
            self._heard(inp.text, inp.at)
            return
        if not self._can_answer():
            self._heard(inp.text, inp.at)
            return
        self._consumed.add(inp.utterance)
        if inp.confidence < self.min_confidence:
            self._unclear(inp)
            return
        self._heard(inp.text, inp.at)
        if self._prompt is not None:
            self._stop(inp.at)
        ans = self._understand(inp.text, partial=False)
        self._pending = None
        if ans is None:
            self._event("no_match", inp.at, text=inp.text)
            self._retry("no_match", inp.at)
        else:
            self._commit(ans, inp.utterance, inp.at, record=False)

    def _unclear(self, inp: Final) -> None:
        # A cough or a line noise Whisper spelled as a word: neither an answer nor a wrong
        # answer. The caller is waited for as if silent (the no-input path).
        assert self.step is not None
        self.transcript.append(
            {
                "who": "caller",
                "step": self.step.id,
                "text": inp.text,
                "at": self._rel(inp.at),
                "unclear": True,
            }
        )
        self._event("unclear", inp.at, text=inp.text, answer=round(inp.confidence, 3))
        self._pending = None
        if self._prompt is None and self._hearing_since is None and self._deadline is None:
            self._listen_from(inp.at)

    def _dtmf(self, inp: Dtmf) -> None:
        step = self.step
        if step is None or step.kind != "ask" or not self._listening:
            return
        if self._prompt is not None:
            self._stop(inp.at)
        self._heard(f"[dtmf {inp.digit}]", inp.at)
        if self._candidate is not None:
            v = _CONFIRM_KEYS.get(inp.digit)
            if v is None:
                self._retry("no_match", inp.at)
            else:
                self._commit(Answer(v, inp.digit), None, inp.at, record=False)
            return
        if step.expect == "number":
            if inp.digit != "#":
                self._digits += inp.digit
            if inp.digit == "#" or len(self._digits) >= step.dtmf_max_digits:
                self._digits_done(inp.at)
            else:
                self._listen_from(inp.at)  # the inter-digit timeout
            return
        ans = dtmf_answer(step, inp.digit)
        if ans is None:
            self._event("no_match", inp.at, text=f"dtmf {inp.digit}")
            self._retry("no_match", inp.at)
        else:
            self._commit(ans, None, inp.at, record=False)

    def _digits_done(self, at: float) -> None:
        assert self.step is not None
        digits, self._digits = self._digits, ""
        ans = dtmf_answer(self.step, digits) if digits else None
        if ans is None:
            self._event("no_match", at, text=f"dtmf {digits}")
            self._retry("no_match", at)
        else:
            self._commit(ans, None, at, record=False)

    def _tick(self, at: float) -> None:
        if self._hearing_since is not None and at - self._hearing_since > MAX_TURN_S:
            self._hearing_since = None
            self._listen_from(at)
        if self._deadline is None or at < self._deadline or self._hearing_since is not None:
            return
        self._deadline = None
        if self._digits:
            self._digits_done(at)
            return
        self._event("no_input", at)
        self._retry("no_input", at)

    # -- answers ----------------------------------------------------------------------------
    def _commit(self, ans: Answer, utt: int | None, at: float, *, record: bool = True) -> None:
        step = self.step
        assert step is not None
        if utt is not None:
            self._consumed.add(utt)
            if record:
                self._heard(ans.text, at)
        self._pending = None
        self._deadline = None
        self._event("heard", at, text=ans.text, answer=ans.value)
        if self._candidate is not None:
            candidate, self._candidate = self._candidate, None
            if ans.value == "yes":
                self._fill(candidate, at)
            else:
                self._event("not_confirmed", at, answer=candidate.value)
                self._retry("no_match", at, ask_again=True)
            return
        if step.confirm:
            self._candidate = ans
            self._play(
                step.confirm,
                "confirm",
                at,
                values={**self._values(), step.slot_name: ans.value, "value": ans.value},
            )
            return
        self._fill(ans, at)

    def _fill(self, ans: Answer, at: float) -> None:
        step = self.step
        assert step is not None
        self.slots[step.slot_name] = ans.value
        self._event("answer", at, answer=ans.value)
        target = step.branches.get(str(ans.value))
        self._enter(target if target is not None else self.scenario.after(step), at)

    def _retry(self, kind: str, at: float, *, ask_again: bool = False) -> None:
        step = self.step
        assert step is not None
        policy = step.no_input if kind == "no_input" else step.no_match
        self._retries[kind] += 1
        if self._retries[kind] > policy.retries:
            if policy.then is not None:
                self._enter(policy.then, at)
            else:
                outcome = policy.outcome or kind
                self._finish(Hangup(outcome), at, outcome)
            return
        if self._candidate is not None and not ask_again:
            values = {
                **self._values(),
                step.slot_name: self._candidate.value,
                "value": self._candidate.value,
            }
            self._play(step.confirm or "", "confirm", at, values=values)
            return
        self._candidate = None
        self._play(policy.reprompt or step.ask or "", "reprompt", at)
