"""A tenant's playbooks compiled for matching one utterance against every rule at once.

Phrases and keywords are stored as word sequences (stems, or folded words when a rule
turns inflection off) in an index keyed by their first word, so an utterance costs one
lookup per word plus its regexes, however many rules there are. Matches are found on the
folded text and reported with the original words ({matched} keeps accents and case).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import regex

from prompter.patterns import compile_pattern
from prompter.playbook import Absent, HintSpec, Playbook, Rule, Said, Silence, When
from prompter.tokens import Token, fold_with_map, tokenize

TriggerKind = Literal["when", "absent", "silence"]


@dataclass(frozen=True)
class CompiledRule:
    """One rule ready to run, keyed `{playbook}/{rule id}` across the tenant's playbooks."""

    key: str
    playbook: str
    rule: Rule
    kind: TriggerKind
    leg: str
    within_s: float | None
    after_key: str | None
    for_s: float
    cooldown_s: float
    variables: dict[str, str]
    regexes: tuple[regex.Pattern[str], ...] = ()

    @property
    def hint(self) -> HintSpec:
        """The hint this rule shows."""
        return self.rule.hint

    def hears(self, leg: str) -> bool:
        """Whether words said on `leg` count for this rule (mono counts only for 'any')."""
        return self.leg == "any" or self.leg == leg


@dataclass(frozen=True)
class Hit:
    """A rule whose words were found in an utterance."""

    rule: CompiledRule
    matched: str
    groups: dict[str, str] = field(default_factory=dict)


@dataclass
class MatchResult:
    """What matching one utterance found, and which regexes ran out of time."""

    hits: list[Hit] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)


_Entry = tuple[int, tuple[str, ...]]


class RuleSet:
    """Every rule of one tenant, compiled."""

    def __init__(
        self,
        playbooks: Iterable[tuple[str, Playbook]],
        *,
        default_cooldown_s: float,
        regex_timeout_ms: int,
    ) -> None:
        self.rules: list[CompiledRule] = []
        self._by_stem: dict[str, list[_Entry]] = defaultdict(list)
        self._by_word: dict[str, list[_Entry]] = defaultdict(list)
        self._regex_rules: list[int] = []
        self._timeout_s = regex_timeout_ms / 1000
        for name, book in playbooks:
            for rule in book.rules:
                self._add(name, book, rule, default_cooldown_s)

    def _add(self, name: str, book: Playbook, rule: Rule, default_cooldown_s: float) -> None:
        trig = rule.trigger
        kind: TriggerKind = "silence"
        if isinstance(trig, When):
            kind = "when"
        elif isinstance(trig, Absent):
            kind = "absent"
        regexes: tuple[regex.Pattern[str], ...] = ()
        if isinstance(trig, Said):
            regexes = tuple(compile_pattern(p) for p in trig.regex)
        cooldown = rule.hint.cooldown_s
        compiled = CompiledRule(
            key=f"{name}/{rule.id}",
            playbook=name,
            rule=rule,
            kind=kind,
            leg=trig.leg,
            within_s=trig.within_s if isinstance(trig, When | Absent) else None,
            after_key=f"{name}/{trig.after}" if isinstance(trig, When) and trig.after else None,
            for_s=trig.for_s if isinstance(trig, Silence) else 0.0,
            cooldown_s=default_cooldown_s if cooldown is None else cooldown,
            variables=dict(book.variables),
            regexes=regexes,
        )
        idx = len(self.rules)
        self.rules.append(compiled)
        if isinstance(trig, Said):
            for text in (*trig.phrases, *trig.keywords):
                toks = tokenize(fold_with_map(text)[0])
                seq = tuple(t.stem if trig.inflect else t.folded for t in toks)
                if seq:
                    index = self._by_stem if trig.inflect else self._by_word
                    index[seq[0]].append((idx, seq))
            if regexes:
                self._regex_rules.append(idx)

    def of_kind(self, kind: TriggerKind) -> list[CompiledRule]:
        """Rules with this kind of trigger."""
        return [r for r in self.rules if r.kind == kind]

    def match(self, text: str, leg: str) -> MatchResult:
        """Every `when`/`absent` rule that hears `leg` and whose words are in `text`."""
        result = MatchResult()
        folded, where = fold_with_map(text)
        tokens = tokenize(folded)
        found: dict[int, Hit] = {}
        for i, tok in enumerate(tokens):
            for index, word in ((self._by_stem, tok.stem), (self._by_word, tok.folded)):
                for idx, seq in index.get(word, ()):
                    if idx in found or not self.rules[idx].hears(leg):
                        continue
                    if _starts_at(tokens, i, seq, index is self._by_stem):
                        last = tokens[i + len(seq) - 1]
                        found[idx] = Hit(self.rules[idx], _original(text, where, tok, last))
        for idx in self._regex_rules:
            rule = self.rules[idx]
            if idx in found or not rule.hears(leg):
                continue
            for pattern in rule.regexes:
                try:
                    m = pattern.search(folded, timeout=self._timeout_s)
                except TimeoutError:
                    result.timeouts.append(rule.key)
                    continue
                if m is not None:
                    groups = {
                        g: _span(text, where, m.start(g), m.end(g)) if m.start(g) >= 0 else ""
                        for g in pattern.groupindex
                    }
                    found[idx] = Hit(rule, _span(text, where, m.start(), m.end()), groups)
                    break
        result.hits = [found[i] for i in sorted(found)]
        return result


def _starts_at(tokens: list[Token], i: int, seq: tuple[str, ...], by_stem: bool) -> bool:
    if i + len(seq) > len(tokens):
        return False
    for k, want in enumerate(seq):
        tok = tokens[i + k]
        if (tok.stem if by_stem else tok.folded) != want:
            return False
    return True


def _span(text: str, where: list[int], start: int, end: int) -> str:
    """The original text behind folded[start:end]."""
    if start >= end or not where:
        return ""
    return text[where[start] : where[end - 1] + 1]


def _original(text: str, where: list[int], first: Token, last: Token) -> str:
    return _span(text, where, first.start, last.end)
