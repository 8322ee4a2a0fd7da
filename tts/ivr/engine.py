"""Walk a menu: sessions with a TTL, DTMF and speech input, hours branches."""

from __future__ import annotations

import re
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tts.ivr.menu import Action, Menu, Node, Option

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class SessionExpired(LookupError):
    """The session's TTL passed (or it never existed)."""


class SessionFinished(RuntimeError):
    """Input to a session whose call already left the menu."""


@dataclass
class Session:
    """One caller's walk through a menu."""

    id: str
    menu_name: str
    menu: Menu
    node: str
    expires_at: float
    tries: int = 0
    finished: bool = False
    history: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    """Lower case, accents removed, punctuation to spaces: for keyword matching."""
    t = unicodedata.normalize("NFKD", text.casefold())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", t).split())


def is_open(action: Action, now: datetime) -> bool:
    """Whether `now` falls in the weekly schedule, read in the action's timezone."""
    local = now.astimezone(ZoneInfo(action.timezone or "UTC"))
    hm = local.strftime("%H:%M")
    for r in action.schedule.get(_DAYS[local.weekday()], []):
        start, end = r.split("-")
        if start <= hm < end:
            return True
    return False


class Engine:
    """Sessions of every menu in this process; a step returns the next prompt and action."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.sessions: dict[str, Session] = {}
        # Routes run in a thread pool: one session's steps and the expiry sweep must not race.
        self._lock = threading.RLock()

    def _get(self, session_id: str) -> Session:
        now = time.monotonic()
        for sid in [s for s, v in self.sessions.items() if v.expires_at < now]:
            del self.sessions[sid]
        s = self.sessions.get(session_id)
        if s is None:
            raise SessionExpired(f"session {session_id!r} expired or unknown")
        if s.finished:
            raise SessionFinished(f"session {session_id!r} already finished")
        s.expires_at = now + self.ttl_s
        return s

    def start(self, menu_name: str, menu: Menu, now: datetime | None = None) -> dict[str, Any]:
        """Open a session at the menu's start node."""
        s = Session(uuid.uuid4().hex, menu_name, menu, menu.start, time.monotonic() + self.ttl_s)
        with self._lock:
            self.sessions[s.id] = s
            return {"session": s.id, **self._enter(s, menu.start, now)}

    def owner(self, session_id: str) -> str | None:
        """The menu name a live session belongs to (None when unknown)."""
        with self._lock:
            s = self.sessions.get(session_id)
            return s.menu_name if s else None

    def _enter(self, s: Session, node_name: str, now: datetime | None) -> dict[str, Any]:
        """Move to a node; nodes without options run their action straight away."""
        prompts: list[str] = []
        for _ in range(len(s.menu.nodes) + 1):  # validation forbids loops without input
            s.node, s.tries = node_name, 0
            s.history.append(node_name)
            node = s.menu.nodes[node_name]
            if _has_prompt(node):
                prompts.append(node_name)
            if node.options or node.action is None:
                return {
                    "node": node_name,
                    "prompts": prompts,
                    "action": None,
                    "timeout_s": node.timeout_s,
                }
            nxt = self._resolve(node.action, now)
            if nxt is None:
                return self._finish(s, node.action, prompts)
            node_name = nxt
        raise RuntimeError("loop without input")  # unreachable for a validated menu

    def _resolve(self, a: Action, now: datetime | None) -> str | None:
        if a.kind == "goto":
            return a.node
        if a.kind == "hours":
            return a.open if is_open(a, now or datetime.now(ZoneInfo("UTC"))) else a.closed
        return None

    def _finish(self, s: Session, a: Action, prompts: list[str]) -> dict[str, Any]:
        s.finished = True
        return {
            "node": s.node,
            "prompts": prompts,
            "finished": True,
            "action": a.model_dump(exclude_none=True, exclude={"schedule"}),
        }

    def _take(self, s: Session, opt: Option, now: datetime | None) -> dict[str, Any]:
        nxt = self._resolve(opt.action, now)
        if nxt is None:
            return self._finish(s, opt.action, [])
        return self._enter(s, nxt, now)

    def _miss(self, s: Session, kind: str, now: datetime | None) -> dict[str, Any]:
        """No match or no input: the kind's prompt and a re-prompt, until retries run out."""
        node = s.menu.nodes[s.node]
        s.tries += 1
        if s.tries <= node.retries:
            extra = node.no_input_prompt if kind == "no_input" else node.no_match_prompt
            prompts = ([f"{s.node}:{kind}"] if extra else []) + [s.node]
            return {
                "node": s.node,
                "prompts": prompts,
                "action": None,
                "retry": s.tries,
                "reason": kind,
                "timeout_s": node.timeout_s,
            }
        nxt = self._resolve(node.on_fail, now)
        return self._finish(s, node.on_fail, []) if nxt is None else self._enter(s, nxt, now)

    def input(
        self,
        session_id: str,
        dtmf: str | None = None,
        speech: str | None = None,
        final: bool = True,
        now: datetime | None = None,
    ) -> dict[str, Any] | None:
        """Apply a digit, a (partial) transcript, or a timeout (neither); None: wait for more.

        Raises SessionExpired / SessionFinished; a partial transcript without a keyword
        returns None (keep listening), a final one without a keyword is a no-match.
        """
        with self._lock:
            s = self._get(session_id)
            opts = s.menu.nodes[s.node].options
            if dtmf is not None:
                opt = next((o for o in opts if o.digit == dtmf), None)
            elif speech is not None:
                opt = match_speech(opts, speech)
                if opt is None and not final:
                    return None  # a partial without a keyword yet: keep listening
            else:
                return self._miss(s, "no_input", now)
            return self._take(s, opt, now) if opt else self._miss(s, "no_match", now)

    def match_speech(
        self, session_id: str, text: str, final: bool, now: datetime | None = None
    ) -> dict[str, Any] | None:
        """For the live STT path: route on a partial as soon as a keyword is heard.

        None while a partial holds no keyword; otherwise the step (as `input`).
        """
        return self.input(session_id, speech=text, final=final, now=now)


def _has_prompt(node: Node) -> bool:
    return bool((node.prompt and node.prompt.strip()) or node.audio)


def match_speech(options: list[Option], text: str) -> Option | None:
    """The option whose keyword occurs in `text` as whole words (case/accent-insensitive).

    Works on partial transcripts: the first keyword heard wins; longer keywords first so
    "technical support" beats "support" when both are options.
    """
    said = f" {fold(text)} "
    pairs = [(fold(k), o) for o in options for k in o.keywords if fold(k)]
    for kw, opt in sorted(pairs, key=lambda p: -len(p[0])):
        if f" {kw} " in said:
            return opt
    return None
