"""Playbook validation lists every error at once, each with its path."""

from __future__ import annotations

import time

import pytest

from pipeline.config import PrompterSettings
from prompter.patterns import PatternError, check_pattern
from prompter.validate import PlaybookInvalid, load_playbook

BROKEN = """
variables: {offer: "x"}
rules:
  - id: retention
    when: {phrases: ["cancel my contract"], regex: ["(a+)+$", "[unclosed"], leg: both}
    hint: {kind: script, title: Retention, text: "Offer {offer} {unknown}"}
  - id: notice
    absent: {phrases: ["this call is recorded"], within_s: 30}
    hint: {kind: compliance, title: Notice}
  - id: late
    when: {phrases: ["goodbye"], after: nowhere}
    hint: {kind: script, title: Late, text: ok}
  - id: retention
    silence: {for_s: 20}
    hint: {kind: gossip, title: Dup, text: ok}
"""


def _errors(text: str, settings: PrompterSettings) -> dict[str, str]:
    with pytest.raises(PlaybookInvalid) as info:
        load_playbook(text, settings)
    return {e.path: e.message for e in info.value.errors}


def test_every_error_is_listed_with_its_path(prompter_settings: PrompterSettings) -> None:
    errors = _errors(BROKEN, prompter_settings)
    assert "nested quantifier" in errors["rules[0].when.regex[0]"]
    assert "invalid regular expression" in errors["rules[0].when.regex[1]"]
    assert "'agent', 'customer' or 'any'" in errors["rules[0].when.leg"]
    assert "unknown placeholder {unknown}" in errors["rules[0].hint.text"]
    assert errors["rules[1].hint.text"] == "Field required"
    assert "unknown rule 'nowhere'" in errors["rules[2].when.after"]
    assert "duplicate rule id" in errors["rules[3].id"]
    assert "rules[3].hint.kind" in errors
    assert len(errors) == 8


def test_a_valid_playbook_loads(playbook_yaml: str, prompter_settings: PrompterSettings) -> None:
    book = load_playbook(playbook_yaml, prompter_settings)
    assert [r.id for r in book.rules] == ["retention", "recording-notice", "hold"]
    assert book.rules[1].absent is not None and book.rules[1].absent.leg == "agent"
    assert book.variables == {"offer": "two months free"}


def test_json_and_structural_errors(prompter_settings: PrompterSettings) -> None:
    with pytest.raises(PlaybookInvalid, match="not valid JSON"):
        load_playbook(b"{rules: ", prompter_settings, fmt="json")
    with pytest.raises(PlaybookInvalid, match="not valid YAML"):
        load_playbook("rules: [", prompter_settings)
    errors = _errors("rules: []", prompter_settings)
    assert "non-empty list" in errors["rules"]
    errors = _errors(
        "rules:\n - id: a\n   when: {phrases: [x]}\n   silence: {for_s: 3}\n"
        "   hint: {kind: alert, title: T, text: t}\n - id: b\n   hint: {kind: alert, title: T,"
        " text: t}\n",
        prompter_settings,
    )
    assert "exactly one trigger" in errors["rules[0]"] and "has when, silence" in errors["rules[0]"]
    assert "exactly one trigger" in errors["rules[1]"]


def test_references_loops_keywords_and_empty_words(prompter_settings: PrompterSettings) -> None:
    text = """
rules:
  - id: a
    when: {phrases: ["hello"], after: b}
    hint: {kind: script, title: A, text: "{matched}"}
  - id: b
    when: {phrases: ["..."], keywords: ["two words"], after: a}
    hint: {kind: script, title: B, text: "{"}
  - id: c
    when: {leg: agent}
    hint: {kind: script, title: C, text: c}
"""
    errors = _errors(text, prompter_settings)
    assert "loop" in errors["rules[0].when.after"] and "loop" in errors["rules[1].when.after"]
    assert errors["rules[1].when.phrases[0]"] == "phrase has no words"
    assert "one word" in errors["rules[1].when.keywords[0]"]
    assert "bad placeholder syntax" in errors["rules[1].hint.text"]
    assert "at least one of phrases" in errors["rules[2].when"]


def test_named_regex_groups_are_placeholders(prompter_settings: PrompterSettings) -> None:
    text = r"""
rules:
  - id: amount
    when: {regex: ['(?P<amount>\d+) euros']}
    hint: {kind: knowledge, title: "Amount", text: "They mentioned {amount} euros"}
"""
    assert load_playbook(text, prompter_settings).rules[0].id == "amount"
    bad = text.replace("{amount} euros", "{total} euros")
    assert "unknown placeholder {total}" in _errors(bad, prompter_settings)["rules[0].hint.text"]


@pytest.mark.parametrize(
    "pattern", [r"(a+)+$", r"(\w+\s?)*$x", r"(x+x+)+y", r"(?:(?:a|b)*)*c", r"(a{1,3})+$"]
)
def test_nested_quantifiers_are_refused_statically(pattern: str) -> None:
    with pytest.raises(PatternError, match="nested quantifier"):
        check_pattern(pattern, 100)


def test_overlapping_alternation_is_caught_by_the_time_budget() -> None:
    # No nested quantifier, but (a|aa)+ backtracks exponentially on "aaaa...!".
    t0 = time.monotonic()
    with pytest.raises(PatternError, match="more than 50 ms"):
        check_pattern(r"^(a|aa)+$", 50)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "pattern", [r"\bcancel\w*", r"(\d{3}-)+\d{4}", r"(?P<amount>\d+) ?(euros|€)", r"résili\w+"]
)
def test_ordinary_patterns_pass(pattern: str) -> None:
    check_pattern(pattern, 100)


def test_patterns_matching_the_empty_string_are_refused() -> None:
    with pytest.raises(PatternError, match="empty string"):
        check_pattern(r"(cancel)?", 100)
