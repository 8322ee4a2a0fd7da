"""Playbook validation that lists EVERY error at once, each with its path
(`rules[2].when.regex[0]: ...`), so an author fixes a playbook in one round trip.

Each rule is validated on its own, so one broken rule does not hide the errors of the
others; then the checks that need the whole playbook (duplicate ids, `after` references
and their loops) run on whatever ids could be read.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config import PrompterSettings
from prompter.patterns import PatternError, check_pattern
from prompter.playbook import BASE_PLACEHOLDERS, PLACEHOLDER, Playbook, Rule
from prompter.tokens import fold, tokenize

_PLACEHOLDER = re.compile(PLACEHOLDER)
TRIGGERS = ("when", "absent", "silence")


@dataclass(frozen=True)
class PlaybookError:
    """One problem and where it is."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(playbook)'}: {self.message}"


class PlaybookInvalid(ValueError):
    """A playbook with one or more errors; `errors` lists them all."""

    def __init__(self, errors: list[PlaybookError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    def detail(self, what: str) -> dict[str, object]:
        """The 422 answer's body: how many errors, each with its path."""
        return {
            "message": f"invalid {what}: {len(self.errors)} error(s)",
            "errors": [{"path": e.path, "message": e.message} for e in self.errors],
        }


def parse_playbook_text(text: str | bytes, fmt: str = "yaml") -> Any:
    """The raw structure of a YAML or JSON playbook; PlaybookInvalid when unreadable."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if fmt == "json":
            return json.loads(text)
        return yaml.safe_load(text)
    except UnicodeDecodeError:
        raise PlaybookInvalid([PlaybookError("", "not UTF-8 text")]) from None
    except json.JSONDecodeError as exc:
        raise PlaybookInvalid([PlaybookError("", f"not valid JSON: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise PlaybookInvalid([PlaybookError("", f"not valid YAML: {exc}")]) from None


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def pydantic_errors(prefix: str, exc: ValidationError) -> list[PlaybookError]:
    """Pydantic's errors with their paths, as PlaybookErrors."""
    return [PlaybookError(_path(prefix, tuple(e["loc"])), e["msg"]) for e in exc.errors()]


def validate_playbook(raw: Any, settings: PrompterSettings) -> Playbook:
    """The typed playbook, or PlaybookInvalid listing every error with its path."""
    if not isinstance(raw, dict):
        raise PlaybookInvalid([PlaybookError("", "a playbook is a mapping with a 'rules' list")])
    errors: list[PlaybookError] = []
    header = {k: v for k, v in raw.items() if k != "rules"}
    try:
        head = Playbook.model_validate(header)
    except ValidationError as exc:
        errors.extend(pydantic_errors("", exc))
        head = Playbook()
    variables = set(head.variables)
    for name in head.variables:
        if not _PLACEHOLDER.match(name):
            errors.append(PlaybookError(f"variables.{name}", "a variable name is an identifier"))
        elif name in BASE_PLACEHOLDERS:
            errors.append(PlaybookError(f"variables.{name}", "reserved placeholder name"))

    raw_rules = raw.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        errors.append(PlaybookError("rules", "a non-empty list of rules is required"))
        raw_rules = []
    if len(raw_rules) > settings.max_rules:
        errors.append(PlaybookError("rules", f"more than {settings.max_rules} rules"))

    rules: list[Rule] = []
    ids: dict[str, int] = {}
    for i, raw_rule in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(raw_rule, dict):
            errors.append(PlaybookError(where, "a rule is a mapping"))
            continue
        rid = raw_rule.get("id")
        if isinstance(rid, str):
            if rid in ids:
                errors.append(PlaybookError(f"{where}.id", f"duplicate rule id {rid!r}"))
            ids.setdefault(rid, i)
        present = [t for t in TRIGGERS if raw_rule.get(t) is not None]
        if len(present) != 1:
            errors.append(
                PlaybookError(
                    where,
                    "a rule needs exactly one trigger: when, absent or silence"
                    + (f" (has {', '.join(present)})" if present else ""),
                )
            )
        # Content checks read the raw rule, so they report even when typing failed.
        rule_errors = _check_rule(where, raw_rule, variables, settings)
        errors.extend(rule_errors)
        try:
            rule = Rule.model_validate(raw_rule)
        except ValidationError as exc:
            errors.extend(pydantic_errors(where, exc))
            continue
        if not rule_errors and len(present) == 1:
            rules.append(rule)

    errors.extend(_check_references(raw_rules, ids))
    if errors:
        raise PlaybookInvalid(errors)
    return head.model_copy(update={"rules": tuple(rules)})


def _strings(value: Any) -> list[tuple[int, str]]:
    """(index, text) of the strings of a list; other shapes are pydantic's to report."""
    if not isinstance(value, list | tuple):
        return []
    return [(j, v) for j, v in enumerate(value) if isinstance(v, str)]


def _check_rule(
    where: str, raw_rule: dict[str, Any], variables: set[str], settings: PrompterSettings
) -> list[PlaybookError]:
    errors: list[PlaybookError] = []
    groups: set[str] = set()
    for name in ("when", "absent"):
        trig = raw_rule.get(name)
        if isinstance(trig, dict):
            errors.extend(check_said(f"{where}.{name}", trig, settings, groups))
    when = raw_rule.get("when")
    if isinstance(when, dict) and when.get("after") is not None:
        if when.get("after") == raw_rule.get("id"):
            errors.append(PlaybookError(f"{where}.when.after", "a rule cannot wait for itself"))
    allowed = BASE_PLACEHOLDERS | variables | groups
    hint = raw_rule.get("hint")
    if isinstance(hint, dict):
        for field in ("text", "title"):
            value = hint.get(field)
            if isinstance(value, str):
                errors.extend(_check_placeholders(f"{where}.hint.{field}", value, allowed))
    return errors


def check_said(
    where: str, said: dict[str, Any], settings: PrompterSettings, groups: set[str] | None = None
) -> list[PlaybookError]:
    """The problems of one raw `Said` (words to look for) at `where`; the regexes' named
    groups are added to `groups`. Call categories (recordings/categories.py) check their
    words with it too."""
    groups = set() if groups is None else groups
    errors: list[PlaybookError] = []
    if not (said.get("phrases") or said.get("keywords") or said.get("regex")):
        errors.append(PlaybookError(where, "give at least one of phrases, keywords, regex"))
    for j, phrase in _strings(said.get("phrases")):
        if not tokenize(fold(phrase)):
            errors.append(PlaybookError(f"{where}.phrases[{j}]", "phrase has no words"))
    for j, word in _strings(said.get("keywords")):
        n = len(tokenize(fold(word)))
        if n != 1:
            errors.append(
                PlaybookError(
                    f"{where}.keywords[{j}]",
                    "keyword has no word" if n == 0 else "a keyword is one word; use phrases",
                )
            )
    for j, pattern in _strings(said.get("regex")):
        try:
            compiled = check_pattern(pattern, settings.regex_probe_budget_ms)
        except PatternError as exc:
            errors.append(PlaybookError(f"{where}.regex[{j}]", str(exc)))
            continue
        groups.update(compiled.groupindex)
    within = said.get("within_s")
    if isinstance(within, int | float) and within > 86400:
        errors.append(PlaybookError(f"{where}.within_s", "at most 86400 s"))
    return errors


def _check_placeholders(
    where: str, text: str, allowed: frozenset[str] | set[str]
) -> list[PlaybookError]:
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        return [PlaybookError(where, f"bad placeholder syntax: {exc} (write {{{{ for a brace)")]
    errors = []
    for f in fields:
        if not _PLACEHOLDER.match(f):
            errors.append(PlaybookError(where, f"placeholder {{{f}}} is not a plain name"))
        elif f not in allowed:
            known = ", ".join(sorted(allowed))
            errors.append(PlaybookError(where, f"unknown placeholder {{{f}}} (known: {known})"))
    return errors


def _check_references(raw_rules: list[Any], ids: dict[str, int]) -> list[PlaybookError]:
    errors: list[PlaybookError] = []
    after: dict[str, str] = {}
    for i, raw_rule in enumerate(raw_rules):
        when = raw_rule.get("when") if isinstance(raw_rule, dict) else None
        ref = when.get("after") if isinstance(when, dict) else None
        if not isinstance(ref, str):
            continue
        if ref not in ids:
            errors.append(PlaybookError(f"rules[{i}].when.after", f"unknown rule {ref!r}"))
        elif isinstance(raw_rule.get("id"), str) and ref != raw_rule["id"]:
            after[raw_rule["id"]] = ref
    for start in after:
        seen = {start}
        cur = after.get(start)
        while cur is not None:
            if cur == start:
                errors.append(
                    PlaybookError(
                        f"rules[{ids[start]}].when.after", "rules wait for each other in a loop"
                    )
                )
                break
            if cur in seen:
                break
            seen.add(cur)
            cur = after.get(cur)
    return errors


def load_playbook(text: str | bytes, settings: PrompterSettings, fmt: str = "yaml") -> Playbook:
    """Parse and validate in one step (the API and the CLI)."""
    return validate_playbook(parse_playbook_text(text, fmt), settings)
