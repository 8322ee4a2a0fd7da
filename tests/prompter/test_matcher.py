"""Matching: word boundaries, accents, case, English and French inflection, regexes, legs."""

from __future__ import annotations

import pytest

from pipeline.config import PrompterSettings
from prompter.matcher import RuleSet
from prompter.tokens import fold, stem
from prompter.validate import load_playbook

RULES = r"""
variables: {}
rules:
  - id: cancel
    when: {phrases: ["cancel my contract"], keywords: [cancellation, résilier], leg: customer}
    hint: {kind: script, title: T, text: "{matched}"}
  - id: exact
    when: {phrases: ["Contrat Pro"], inflect: false}
    hint: {kind: script, title: T, text: t}
  - id: amount
    when: {regex: ['(?P<amount>\d+) ?(?:euros|€)']}
    hint: {kind: alert, title: T, text: "{amount}"}
  - id: agent-only
    when: {keywords: [guarantee], leg: agent}
    hint: {kind: alert, title: T, text: t}
"""


@pytest.fixture
def rules(prompter_settings: PrompterSettings) -> RuleSet:
    return RuleSet(
        [("main", load_playbook(RULES, prompter_settings))],
        default_cooldown_s=30,
        regex_timeout_ms=20,
    )


def _hits(rules: RuleSet, text: str, leg: str = "customer") -> dict[str, str]:
    return {h.rule.rule.id: h.matched for h in rules.match(text, leg).hits}


@pytest.mark.parametrize(
    "word", ["cancel", "cancels", "cancelling", "cancellation", "cancelled", "canceled"]
)
def test_english_inflections_share_a_stem(word: str) -> None:
    assert stem(fold(word)) == stem("cancel")


@pytest.mark.parametrize(
    "word", ["résilier", "résiliation", "résilie", "résilié", "résiliée", "RÉSILIÉS", "resilier"]
)
def test_french_inflections_and_accents_share_a_stem(word: str) -> None:
    assert stem(fold(word)) == stem(fold("résilier"))


def test_phrases_match_inflected_with_original_words(rules: RuleSet) -> None:
    assert _hits(rules, "Hello, I want to CANCEL my contract.") == {"cancel": "CANCEL my contract"}
    assert _hits(rules, "I'm cancelling my contracts today") == {
        "cancel": "cancelling my contracts"
    }
    assert _hits(rules, "la résiliation, s'il vous plaît") == {"cancel": "résiliation"}
    assert _hits(rules, "je veux RESILIER") == {"cancel": "RESILIER"}


def test_word_boundaries(rules: RuleSet) -> None:
    # Words inside other words, or a phrase's words in another order, do not count.
    assert _hits(rules, "the precancel my contractor") == {}
    assert _hits(rules, "a pro contrat, my contract to end") == {}


def test_without_inflection_only_accents_and_case_fold(rules: RuleSet) -> None:
    assert _hits(rules, "le contrat pro") == {"exact": "contrat pro"}
    assert _hits(rules, "le CONTRÂT PRO") == {"exact": "CONTRÂT PRO"}
    assert _hits(rules, "les contrats pros") == {}


def test_regex_groups_and_legs(rules: RuleSet) -> None:
    result = rules.match("it costs 30 € a month", "customer")
    (hit,) = result.hits
    assert hit.rule.rule.id == "amount" and hit.groups == {"amount": "30"} and hit.matched == "30 €"
    assert _hits(rules, "we guarantee it", "agent") == {"agent-only": "guarantee"}
    assert _hits(rules, "you guarantee it", "customer") == {}
    assert _hits(rules, "I want to cancel my contract", "agent") == {}


def test_a_thousand_rules_only_their_words_fire(prompter_settings: PrompterSettings) -> None:
    lines = ["rules:"]
    for i in range(1000):
        lines += [
            f"  - id: r{i}",
            f'    when: {{phrases: ["product{i} price"]}}',
            "    hint: {kind: knowledge, title: T, text: t}",
        ]
    book = load_playbook("\n".join(lines), prompter_settings)
    rules = RuleSet([("big", book)], default_cooldown_s=30, regex_timeout_ms=20)
    assert _hits(rules, "what is the product417 price and product9 prices?") == {
        "r417": "product417 price",
        "r9": "product9 prices",
    }
