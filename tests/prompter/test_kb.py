"""The knowledge base: BM25 with folding, stemming and stopwords picks the right article."""

from __future__ import annotations

import pytest

from prompter.kb import Article, KbIndex, terms

ARTICLES = [
    Article(
        id="billing-address",
        title="Change the billing address",
        questions=("How do I change my billing address?", "I moved, where do I update my address?"),
        answer="Account > Billing > Address; confirm the identity first.",
    ),
    Article(
        id="roaming",
        title="Calling from abroad",
        questions=("How much does it cost to call from abroad?",),
        answer="Free in the EU; elsewhere one euro per minute.",
    ),
    Article(
        id="resiliation",
        title="Résilier un contrat",
        questions=("Comment résilier mon contrat ?", "Quels sont les frais de résiliation ?"),
        answer="La résiliation est gratuite après douze mois.",
        language="fr",
    ),
    Article(
        id="invoice-copy",
        title="Invoice copy",
        questions=("Can I get a copy of my invoice?",),
        answer="Invoices are in the customer area.",
    ),
]


@pytest.fixture
def kb() -> KbIndex:
    return KbIndex(ARTICLES)


@pytest.mark.parametrize(
    ("question", "article"),
    [
        ("hello yes how can I change the billing address on my account", "billing-address"),
        ("how much would it cost me to call from Spain, that's abroad", "roaming"),
        ("combien coûtent les frais de résiliation de mon contrat", "resiliation"),
        ("could you send me a copy of my last invoices", "invoice-copy"),
    ],
)
def test_questions_find_their_article(kb: KbIndex, question: str, article: str) -> None:
    best = kb.best(question, threshold=2.5, min_terms=2)
    assert best is not None and best.article.id == article
    ranked = kb.search(question)
    assert ranked[0].article.id == article
    assert len(ranked) == 1 or ranked[0].score > ranked[1].score


@pytest.mark.parametrize(
    "text", ["the weather is nice today", "yes my number is four five six", "my address", "ok"]
)
def test_unrelated_or_thin_text_clears_no_threshold(kb: KbIndex, text: str) -> None:
    assert kb.best(text, threshold=2.5, min_terms=2) is None


def test_stopwords_dropped_and_accents_folded() -> None:
    assert terms("Je voudrais résilier MON contrat") == ["resili", "contrat"]
    assert terms("How do I change the address?") == ["chang", "addres"]


def test_empty_knowledge_base() -> None:
    kb = KbIndex([])
    assert len(kb) == 0 and kb.search("anything at all") == []
