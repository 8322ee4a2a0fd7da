"""Snippets made in Python: accent-blind marks, phrases as one run, the best stretch."""

from __future__ import annotations

from recordings.index.query import parse_query
from recordings.index.snippet import ELLIPSIS, make_snippet


def snip(text: str, q: str, size: int = 24) -> str:
    return make_snippet(text, parse_query(q), "[", "]", size)


def test_marks_words_accent_and_case_blind() -> None:
    assert snip("Je veux RÉSILIER, vite.", "resilier") == "Je veux [RÉSILIER], vite."
    assert snip("Le remboursé et le remboursement", "rembours*") == (
        "Le [remboursé] et le [remboursement]"
    )


def test_a_phrase_is_one_run_and_negated_words_are_not_marked() -> None:
    text = "oui mon contrat, pas mon compteur"
    assert snip(text, '"mon contrat"') == "oui [mon contrat], pas mon compteur"
    assert snip(text, "contrat NOT compteur") == "oui mon [contrat], pas mon compteur"


def test_long_texts_keep_the_stretch_with_the_matches() -> None:
    words = [f"mot{i}" for i in range(40)]
    words[30] = "facture"
    got = snip(" ".join(words), "facture", size=6)
    assert got == f"{ELLIPSIS}mot25 mot26 mot27 mot28 mot29 [facture]{ELLIPSIS}"
    assert snip(" ".join(words[:5]) + ".", "absent") == "mot0 mot1 mot2 mot3 mot4."
    assert snip("", "x") == ""
