"""Scenario validation that lists EVERY error at once, each with its path
(`steps[2].branches.maybe: ...`), so an author fixes a scenario in one round trip.

Each step is typed on its own (one broken step does not hide the others' errors); then
the whole-scenario checks run on the ids that could be read: duplicates, unknown step
references, unreachable steps, dead ends, placeholders naming neither a variable nor a
slot, bad regexes, branches and DTMF keys that no answer can take.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.graph import cycles
from prompter.patterns import PatternError, check_pattern
from robot.scenario import DTMF_KEYS, PLACEHOLDER, Scenario, Step

REGEX_BUDGET_MS = 100


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans only: `yes`/`no`/`on`/`off` stay words (answers, branch keys)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_TEXT_FIELDS = ("say", "ask", "confirm")


@dataclass(frozen=True)
class ScenarioError:
    """One problem and where it is."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(scenario)'}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        """JSON shape for API errors."""
        return {"path": self.path, "message": self.message}


class ScenarioInvalid(ValueError):
    """A scenario with one or more errors; `errors` lists them all."""

    def __init__(self, errors: list[ScenarioError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def parse_text(text: str | bytes) -> Any:
    """YAML or JSON (JSON is YAML) text to its raw structure; ScenarioInvalid if unreadable."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        stripped = text.lstrip()
        if stripped.startswith("{"):
            return json.loads(text)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise ScenarioInvalid([ScenarioError("", "not UTF-8 text")]) from None
    except json.JSONDecodeError as exc:
        raise ScenarioInvalid([ScenarioError("", f"not valid JSON: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioInvalid([ScenarioError("", f"not valid YAML: {exc}")]) from None


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic(prefix: str, exc: ValidationError) -> list[ScenarioError]:
    return [ScenarioError(_path(prefix, tuple(e["loc"])), e["msg"]) for e in exc.errors()]


def load_scenario(source: str | bytes | dict[str, Any]) -> Scenario:
    """The typed scenario from text or a parsed mapping, or ScenarioInvalid with every error."""
    raw = parse_text(source) if isinstance(source, str | bytes) else source
    if not isinstance(raw, dict):
        raise ScenarioInvalid([ScenarioError("", "a scenario is a mapping with a 'steps' list")])
    errors: list[ScenarioError] = []
    try:
        head = Scenario.model_validate({k: v for k, v in raw.items() if k != "steps"})
    except ValidationError as exc:
        errors.extend(_pydantic("", exc))
        head = Scenario(name="invalid")
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        errors.append(ScenarioError("steps", "a non-empty list of steps is required"))
        raw_steps = []
    steps: list[tuple[int, Step]] = []
    for i, rs in enumerate(raw_steps):
        try:
            steps.append((i, Step.model_validate(rs)))
        except ValidationError as exc:
            errors.extend(_pydantic(f"steps[{i}]", exc))
    raw_ids = {
        rs["id"] for rs in raw_steps if isinstance(rs, dict) and isinstance(rs.get("id"), str)
    }
    errors.extend(_check(head, steps, len(raw_steps), raw_ids))
    if errors:
        raise ScenarioInvalid(errors)
    return head.model_copy(update={"steps": tuple(s for _, s in steps)})


def _answers(step: Step) -> set[str] | None:
    """Values an ask step's answer can take, when they are a closed set."""
    if step.expect == "yes_no":
        return {"yes", "no"}
    if step.expect == "intent":
        return set(step.intents)
    return None


def _check(
    head: Scenario, steps: list[tuple[int, Step]], n_raw: int, raw_ids: set[str]
) -> list[ScenarioError]:
    errors: list[ScenarioError] = []
    ids: dict[str, int] = {}
    for i, s in steps:
        if s.id in ids:
            errors.append(ScenarioError(f"steps[{i}].id", f"duplicate step id {s.id!r}"))
        ids.setdefault(s.id, i)
    slots = {s.slot_name for _, s in steps if s.kind == "ask"}
    known = set(head.variables) | slots
    for name in set(head.variables) & slots:
        errors.append(ScenarioError("variables", f"{name!r} is both a variable and a slot"))
    edges: dict[str, list[str]] = {}
    order = [s.id for _, s in steps]
    for i, s in steps:
        where = f"steps[{i}]"
        errors.extend(_check_step(where, s, known))
        refs: list[tuple[str, str]] = []
        if s.next is not None:
            refs.append((f"{where}.next", s.next))
        for answer, target in s.branches.items():
            refs.append((f"{where}.branches.{answer}", target))
        for name in ("no_input", "no_match"):
            then = getattr(s, name).then
            if then is not None:
                refs.append((f"{where}.{name}.then", then))
        out: list[str] = []
        for path, target in refs:
            if target not in ids and target not in raw_ids:
                errors.append(ScenarioError(path, f"unknown step {target!r}"))
            elif target in ids:
                out.append(target)
        if s.kind in ("say", "ask") and s.next is None:
            pos = order.index(s.id)
            covered = s.kind == "ask" and _answers(s) is not None and _answers(s) == set(s.branches)
            if pos + 1 < len(order):
                out.append(order[pos + 1])
            elif not covered:
                errors.append(
                    ScenarioError(
                        where, "the last step must hang up or transfer, or name its `next` step"
                    )
                )
        edges[s.id] = out
    # Steps that do not wait for the caller (say) must not lead back to themselves, nor any
    # step straight to itself: the call would repeat until it is cut.
    kinds = {s.id: s.kind for _, s in steps}
    for i, s in steps:
        if s.next == s.id and s.kind != "say":
            errors.append(ScenarioError(f"steps[{i}].next", f"step {s.id!r} leads to itself"))
    silent = {n: [t for t in out if kinds.get(t) == "say"] for n, out in edges.items()}
    for cycle in cycles({n: t for n, t in silent.items() if kinds.get(n) == "say"}):
        errors.append(
            ScenarioError(f"steps[{ids[cycle[0]]}]", "loop without input: " + " -> ".join(cycle))
        )
    if steps and n_raw == len(steps):
        start = head.start or steps[0][1].id
        if head.start is not None and head.start not in ids:
            errors.append(ScenarioError("start", f"unknown step {head.start!r}"))
        elif start in ids:
            seen = {start}
            todo = deque([start])
            while todo:
                for nxt in edges.get(todo.popleft(), []):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            for i, s in steps:
                if s.id not in seen and ids.get(s.id) == i:
                    errors.append(
                        ScenarioError(f"steps[{i}]", f"step {s.id!r} is unreachable from {start!r}")
                    )
    return errors


def _check_step(where: str, s: Step, known: set[str]) -> list[ScenarioError]:
    errors: list[ScenarioError] = []
    kind = s.kind
    if s.ask is not None and s.say is not None:
        errors.append(ScenarioError(where, "a step has either say or ask, not both"))
    if kind == "say" and not s.say:
        errors.append(ScenarioError(where, "a step needs one of say, ask, transfer, hangup"))
    if s.hangup is not None and s.transfer is not None:
        errors.append(ScenarioError(where, "a step has either hangup or transfer, not both"))
    if kind in ("hangup", "transfer") and s.ask is not None:
        errors.append(ScenarioError(where, f"a {kind} step cannot ask"))
    if kind in ("hangup", "transfer") and s.next is not None:
        errors.append(ScenarioError(f"{where}.next", f"a {kind} step ends the dialog"))
    for name in _TEXT_FIELDS:
        text = getattr(s, name)
        if isinstance(text, str):
            allowed = known | ({"value"} if name == "confirm" else set())
            errors.extend(_placeholders(f"{where}.{name}", text, allowed))
    for name in ("no_input", "no_match"):
        reprompt = getattr(s, name).reprompt
        if reprompt:
            errors.extend(_placeholders(f"{where}.{name}.reprompt", reprompt, known))
    if kind != "ask":
        for name in ("branches", "dtmf", "intents", "confirm", "pattern"):
            if getattr(s, name):
                errors.append(ScenarioError(f"{where}.{name}", "only an ask step takes this"))
        return errors
    answers = _answers(s)
    if s.expect == "intent":
        if not s.intents:
            errors.append(ScenarioError(f"{where}.intents", "an intent question needs intents"))
        for name, intent in s.intents.items():
            if not intent.keywords and not intent.examples:
                errors.append(ScenarioError(f"{where}.intents.{name}", "give keywords or examples"))
    elif s.intents:
        errors.append(ScenarioError(f"{where}.intents", "only expect: intent takes intents"))
    for answer in s.branches:
        if answers is None:
            errors.append(
                ScenarioError(
                    f"{where}.branches.{answer}",
                    f"a {s.expect} answer cannot branch (use next); branches need yes_no or intent",
                )
            )
        elif answer not in answers:
            errors.append(
                ScenarioError(
                    f"{where}.branches.{answer}",
                    f"{answer!r} is not an answer of this question ({', '.join(sorted(answers))})",
                )
            )
    for key, value in s.dtmf.items():
        if len(key) != 1 or key not in DTMF_KEYS:
            errors.append(ScenarioError(f"{where}.dtmf.{key}", "a DTMF key is one of 0-9 * #"))
        if answers is None:
            errors.append(
                ScenarioError(
                    f"{where}.dtmf.{key}",
                    f"{s.expect} answers take digits as typed; map keys only for yes_no or intent",
                )
            )
        elif value not in answers:
            errors.append(
                ScenarioError(f"{where}.dtmf.{key}", f"{value!r} is not an answer of this question")
            )
    if s.pattern is not None:
        if s.expect != "free_text":
            errors.append(ScenarioError(f"{where}.pattern", "only free_text answers take one"))
        try:
            check_pattern(s.pattern, REGEX_BUDGET_MS)
        except PatternError as exc:
            errors.append(ScenarioError(f"{where}.pattern", str(exc)))
    if (s.min is not None or s.max is not None) and s.expect != "number":
        errors.append(ScenarioError(where, "min/max apply to number answers only"))
    if s.min is not None and s.max is not None and s.min > s.max:
        errors.append(ScenarioError(f"{where}.min", "min is above max"))
    return errors


def _placeholders(where: str, text: str, allowed: set[str]) -> list[ScenarioError]:
    return [
        ScenarioError(where, f"{{{name}}} is neither a declared variable nor a slot")
        for name in dict.fromkeys(m[1] for m in PLACEHOLDER.finditer(text))
        if name not in allowed
    ]
