"""The Python relevance of large match sets: folding as FTS5 does, phrases, prefixes, order."""

from __future__ import annotations

from recordings.index.query import parse_query
from recordings.index.rank import Phrase, occurrences, phrases, score_window, tokens


def test_tokens_fold_case_accents_and_separators() -> None:
    assert tokens("Je voudrais RÉSILIER mon contrat d'électricité_2") == [
        "je",
        "voudrais",
        "resilier",
        "mon",
        "contrat",
        "d",
        "electricite",
        "2",
    ]


def test_occurrences_of_words_phrases_and_prefixes() -> None:
    doc = tokens("la la la de la Remboursé rembourser")
    assert occurrences(doc, Phrase(("la",), False)) == 4
    assert occurrences(doc, Phrase(("de", "la"), False)) == 1
    assert occurrences(doc, Phrase(("la", "de"), False)) == 1
    assert occurrences(doc, Phrase(("rembours",), True)) == 2
    assert occurrences(doc, Phrase(("rembours",), False)) == 0
    assert occurrences(doc, Phrase(("la", "remb"), True)) == 1


def test_phrases_leave_out_negated_terms() -> None:
    got = phrases(parse_query('("mon contrat" OR résil*) NOT facture'))
    assert got == [Phrase(("mon", "contrat"), False), Phrase(("resil",), True)]


def test_denser_and_shorter_matches_score_higher() -> None:
    texts = [
        "bonjour je vous appelle au sujet de votre dossier de prêt immobilier",
        "prêt prêt prêt",
        "un prêt",
        "le contrat",  # a NOT-side or window neighbour without the word scores nothing
    ]
    scores = score_window(texts, parse_query("pret"))
    assert scores[1] > scores[2] > scores[0] > 0
    assert scores[3] == 0
    both = score_window(["prêt et contrat", "prêt seul ici"], parse_query("pret OR contrat"))
    assert both[0] > both[1]
    assert score_window([], parse_query("pret")) == []
