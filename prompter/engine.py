"""One call's souffleur: utterances in, hints out; timers for what was NOT said.

A CallSession keeps the rules its call started with (a playbook update applies to new
calls only) and what already fired. Partials revise an utterance until its final, so a
rule fires at most once per utterance (rule + utterance id) and then not again within its
cool-down: exactly one hint however often the same words come back. Hint ids are
deterministic (rule, call, utterance or timer), so a replay overwrites instead of adding.

Call time (seconds from call start) is the later of the newest utterance end and the
wall clock since call.started: absences and silences need the clock because nothing
arrives while no one speaks.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.config import PrompterSettings
from pipeline.events import CallStarted, Hint, HintTrigger, Utterance
from prompter.kb import KbIndex
from prompter.matcher import CompiledRule, RuleSet

LEGS = ("agent", "customer")


@dataclass(frozen=True)
class TenantBundle:
    """A tenant's compiled rules and knowledge base, at one version of its playbooks."""

    tenant: str
    version: int
    rules: RuleSet
    kb: KbIndex


@dataclass
class CallInfo:
    """What the session knows of its call (filled from call.started when it came)."""

    tenant: str
    call_id: str
    started_wall: float
    agent_id: str | None = None
    caller: str | None = None
    callee: str | None = None
    direction: str = "inbound"
    # False when the session began mid-call (no call.started seen): what was said before
    # is unknown, so absences cannot be judged and do not fire.
    from_start: bool = True

    @classmethod
    def of(cls, event: CallStarted) -> CallInfo:
        """From a call.started event."""
        d = event.details()
        return cls(
            started_wall=d.pop("started_at").timestamp(),
            **{k: v for k, v in d.items() if k != "language"},
        )


def hint_id(tenant: str, call_id: str, rule: str, anchor: str) -> str:
    """Deterministic: the same firing replayed gets the same id."""
    digest = hashlib.sha1(f"{tenant}|{call_id}|{rule}|{anchor}".encode()).hexdigest()[:20]
    return f"h-{digest}"


class _Values(dict[str, str]):
    """Placeholders validated but empty in this firing (a regex group that did not take
    part, no caller id) render as nothing instead of failing."""

    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, values: dict[str, str]) -> str:
    """Fill {placeholders}; validation guaranteed they are plain, known names."""
    return string.Formatter().vformat(template, (), _Values(values))


@dataclass
class _State:
    fired_utts: set[tuple[str, str]] = field(default_factory=set)
    last_fired: dict[str, float] = field(default_factory=dict)
    absent_done: set[str] = field(default_factory=set)  # said in time, or already reminded
    silence_anchor: dict[str, float] = field(default_factory=dict)  # speech end it fired for
    last_speech: dict[str, float] = field(default_factory=dict)
    kb_utts: set[str] = field(default_factory=set)
    kb_last: dict[str, float] = field(default_factory=dict)
    latest: float = 0.0


class CallSession:
    """The souffleur of one call."""

    def __init__(self, bundle: TenantBundle, info: CallInfo, settings: PrompterSettings) -> None:
        self.bundle = bundle
        self.info = info
        self.settings = settings
        self.regex_timeouts = 0
        self._s = _State()
        self._absent = bundle.rules.of_kind("absent")
        self._silence = bundle.rules.of_kind("silence")

    def update(self, event: CallStarted) -> None:
        """A late call.started: now the agent and the call's real start are known."""
        self.info = CallInfo.of(event)

    def call_time(self, now_wall: float) -> float:
        """Seconds since call start, never behind what was already heard."""
        return max(self._s.latest, now_wall - self.info.started_wall)

    def process(self, utt: Utterance, now_wall: float) -> list[Hint]:
        """Hints an utterance (partial or final) triggers, plus absences now overdue."""
        s = self._s
        s.latest = max(s.latest, utt.end)
        if utt.text.strip():
            s.last_speech[utt.leg] = max(s.last_speech.get(utt.leg, 0.0), utt.end)
        result = self.bundle.rules.match(utt.text, utt.leg)
        self.regex_timeouts += len(result.timeouts)
        hints: list[Hint] = []
        for hit in result.hits:
            rule = hit.rule
            if rule.kind == "absent":
                if rule.within_s is not None and utt.start <= rule.within_s:
                    s.absent_done.add(rule.key)
                continue
            if (rule.key, utt.utterance_id) in s.fired_utts:
                continue
            if rule.within_s is not None and utt.start > rule.within_s:
                continue
            if rule.after_key is not None and rule.after_key not in s.last_fired:
                continue
            if not self._cooled(rule, utt.end):
                continue
            s.fired_utts.add((rule.key, utt.utterance_id))
            s.last_fired[rule.key] = utt.end
            values = {"matched": hit.matched, "leg": utt.leg, **hit.groups}
            hints.append(
                self._hint(rule, utt.utterance_id, values, hit.matched, now_wall, utt.utterance_id)
            )
        kb_hint = self._knowledge(utt, now_wall)
        if kb_hint is not None:
            hints.append(kb_hint)
        hints.extend(self._absences(self.call_time(now_wall), now_wall))
        return hints

    def tick(self, now_wall: float) -> list[Hint]:
        """Timer hints due at `now_wall`: absences and silences."""
        t = self.call_time(now_wall)
        return self._absences(t, now_wall) + self._silences(t, now_wall)

    def _cooled(self, rule: CompiledRule, t: float) -> bool:
        last = self._s.last_fired.get(rule.key)
        return last is None or t - last >= rule.cooldown_s

    def _absences(self, t: float, now_wall: float) -> list[Hint]:
        hints: list[Hint] = []
        if not self.info.from_start:
            return hints
        for rule in self._absent:
            if rule.key in self._s.absent_done or rule.within_s is None or t < rule.within_s:
                continue
            self._s.absent_done.add(rule.key)
            self._s.last_fired[rule.key] = t
            hints.append(self._hint(rule, "absent", {"leg": rule.leg}, None, now_wall))
        return hints

    def _silences(self, t: float, now_wall: float) -> list[Hint]:
        hints = []
        for rule in self._silence:
            legs = LEGS if rule.leg == "any" else (rule.leg,)
            spoke = max((self._s.last_speech.get(leg, 0.0) for leg in legs), default=0.0)
            if t - spoke < rule.for_s or self._s.silence_anchor.get(rule.key) == spoke:
                continue
            self._s.silence_anchor[rule.key] = spoke  # once per silence, re-armed by speech
            if not self._cooled(rule, t):
                continue
            self._s.last_fired[rule.key] = t
            anchor = f"silence@{spoke:.3f}"
            hints.append(self._hint(rule, anchor, {"leg": rule.leg}, None, now_wall))
        return hints

    def _knowledge(self, utt: Utterance, now_wall: float) -> Hint | None:
        s = self._s
        kb = self.bundle.kb
        if utt.leg != "customer" or not len(kb) or utt.utterance_id in s.kb_utts:
            return None
        st = self.settings
        match = kb.best(utt.text, st.kb_threshold, st.kb_min_terms)
        if match is None:
            return None
        art = match.article
        last = s.kb_last.get(art.id)
        if last is not None and utt.end - last < st.kb_cooldown_s:
            return None
        s.kb_utts.add(utt.utterance_id)
        s.kb_last[art.id] = utt.end
        rule = f"kb:{art.id}"
        return Hint(
            tenant=self.info.tenant,
            call_id=self.info.call_id,
            agent_id=self.info.agent_id,
            hint_id=hint_id(self.info.tenant, self.info.call_id, rule, utt.utterance_id),
            kind="knowledge",
            title=art.title,
            text=art.answer,
            priority=0,
            trigger=HintTrigger(
                utterance_id=utt.utterance_id, matched=" ".join(match.terms), rule=rule
            ),
            created_at=datetime.fromtimestamp(now_wall, UTC),
        )

    def _hint(
        self,
        rule: CompiledRule,
        anchor: str,
        values: dict[str, str],
        matched: str | None,
        now_wall: float,
        utterance_id: str | None = None,
    ) -> Hint:
        info = self.info
        base = {
            **rule.variables,
            "rule": rule.rule.id,
            "call_id": info.call_id,
            "agent_id": info.agent_id or "",
            "caller": info.caller or "",
            "callee": info.callee or "",
            "direction": info.direction,
            "matched": "",
            **values,
        }
        spec = rule.hint
        return Hint(
            tenant=info.tenant,
            call_id=info.call_id,
            agent_id=info.agent_id,
            hint_id=hint_id(info.tenant, info.call_id, rule.key, anchor),
            kind=spec.kind,
            title=render(spec.title, base),
            text=render(spec.text, base),
            priority=spec.priority,
            trigger=HintTrigger(
                utterance_id=utterance_id,
                matched=matched,
                rule=rule.key,
            ),
            created_at=datetime.fromtimestamp(now_wall, UTC),
        )
