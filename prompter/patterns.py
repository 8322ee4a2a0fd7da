"""User regular expressions: compiled accent- and case-blind, and refused when they can
backtrack catastrophically.

Two guards, because neither alone is enough:
- statically, a variable-count quantifier nested inside another where one is unbounded
  (`(a+)+`, `(\\w+\\s?)*`, `(a{1,3})+`) is refused;
- dynamically, the pattern (compiled with the `regex` package, whose matching takes a
  `timeout=`) is run on pathological probe strings built from its own literals, and must
  finish each within a time budget. Matching at run time uses a timeout too, so a pattern
  that slips through both can only cost its budget, never block the worker.
"""

from __future__ import annotations

import re
import re._constants as sre_c
import re._parser as sre_parse
from typing import Any

import regex

from prompter.tokens import strip_accents

FLAGS = regex.IGNORECASE | regex.V0
PROBE_LEN = 400  # about the longest utterance (15 s of fast speech), in characters
_FILLERS = ("a", "0", " ", "aa ", "a0", "a.")
_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT)


class PatternError(ValueError):
    """A pattern that does not compile or is unsafe to run; the message says why."""


def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """Compile for matching folded text (accents stripped from the pattern as well)."""
    try:
        return regex.compile(strip_accents(pattern), FLAGS)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise PatternError(f"invalid regular expression: {exc}") from None


def check_pattern(pattern: str, budget_ms: int) -> regex.Pattern[str]:
    """Compile and vet a user pattern; raises PatternError with the reason."""
    compiled = compile_pattern(pattern)
    if compiled.search("") is not None:
        raise PatternError("regular expression matches the empty string (it would always fire)")
    tree = _parse(strip_accents(pattern))
    if tree is not None and _nested_quantifier(list(tree), outer=None):
        raise PatternError(
            "nested quantifier (like (a+)+) can backtrack catastrophically; "
            "rewrite it without repeating a repeated group"
        )
    for probe in _probes(tree):
        try:
            compiled.search(probe, timeout=budget_ms / 1000)
        except TimeoutError:
            raise PatternError(
                f"regular expression takes more than {budget_ms} ms on a "
                f"{len(probe)}-character probe (catastrophic backtracking)"
            ) from None
    return compiled


def _parse(pattern: str) -> Any:
    """Python's own parse tree, or None for `regex`-only syntax (the probes still run)."""
    try:
        return sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def _nested_quantifier(items: list[tuple[Any, Any]], outer: tuple[int, int] | None) -> bool:
    """True when a variable repeat sits inside another repeat and either is unbounded."""
    for op, av in items:
        if op in _REPEATS:
            lo, hi, sub = av
            if outer is not None and hi > 1 and lo != hi:
                if hi == sre_c.MAXREPEAT or outer[1] == sre_c.MAXREPEAT:
                    return True
            inner = (lo, hi) if hi > 1 else outer
            if _nested_quantifier(list(sub), inner):
                return True
        elif op is sre_c.SUBPATTERN:
            if _nested_quantifier(list(av[3]), outer):
                return True
        elif op is sre_c.BRANCH:
            if any(_nested_quantifier(list(b), outer) for b in av[1]):
                return True
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            if _nested_quantifier(list(av[1]), outer):
                return True
        elif op is sre_c.GROUPREF_EXISTS:
            branches = [b for b in av[1:] if b is not None]
            if any(_nested_quantifier(list(b), outer) for b in branches):
                return True
        # ATOMIC_GROUP and POSSESSIVE_REPEAT never backtrack into themselves: not walked.
    return False


def _literals(items: list[tuple[Any, Any]], out: list[str]) -> None:
    for op, av in items:
        if op is sre_c.LITERAL:
            out.append(chr(av))
        elif op in _REPEATS:
            _literals(list(av[2]), out)
        elif op is sre_c.SUBPATTERN:
            _literals(list(av[3]), out)
        elif op is sre_c.BRANCH:
            for b in av[1]:
                _literals(list(b), out)
        elif op is sre_c.IN:
            for iop, iav in av:
                if iop is sre_c.LITERAL:
                    out.append(chr(iav))
                elif iop is sre_c.RANGE:
                    out.append(chr(iav[0]))


def _probes(tree: Any) -> list[str]:
    """Strings that make backtracking patterns blow up: long runs of what they match,
    ending in a character they do not expect."""
    lits: list[str] = []
    if tree is not None:
        _literals(list(tree), lits)
    seen: list[str] = []
    for unit in [*dict.fromkeys(lits[:12]), "".join(lits[:8]), *_FILLERS]:
        if unit and unit not in seen:
            seen.append(unit)
    probes = []
    for unit in seen:
        body = (unit * (PROBE_LEN // len(unit) + 1))[:PROBE_LEN]
        probes.append(body + "\x01")
    return probes
