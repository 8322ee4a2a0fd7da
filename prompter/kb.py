"""A tenant's knowledge base: Q&A articles, and BM25 to find the one a customer asks about.

Articles and questions go through the same folding and light English/French stemming as
the rules; English and French stopwords are both dropped (a call may switch language and
a partial is too short to detect it). Title and questions weigh twice the answer. The
document count used for IDF is floored at `MIN_DOCS`, so that a knowledge base of three
articles still gives a rare word a useful weight instead of almost none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from prompter.tokens import STOPWORDS, fold, tokenize

ARTICLE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MIN_DOCS = 10
K1 = 1.2
B = 0.75


class Article(BaseModel):
    """One Q&A article: the questions it answers and the answer the agent sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ARTICLE_ID)
    title: str = Field(min_length=1, max_length=200)
    questions: tuple[str, ...] = Field(default=(), max_length=50)
    answer: str = Field(min_length=1, max_length=8000)
    language: str | None = Field(default=None, min_length=2, max_length=3)
    tags: tuple[str, ...] = ()


def terms(text: str) -> list[str]:
    """Stems of the words of `text` that carry meaning (stopwords dropped)."""
    return [t.stem for t in tokenize(fold(text)) if t.folded not in STOPWORDS and len(t.stem) > 1]


@dataclass(frozen=True)
class KbMatch:
    """The best article for a text, its BM25 score and the query terms it shares."""

    article: Article
    score: float
    terms: tuple[str, ...]


class KbIndex:
    """BM25 over one tenant's articles (rebuilt when they change)."""

    def __init__(self, articles: Iterable[Article]) -> None:
        self.articles = list(articles)
        self._tf: list[Counter[str]] = []
        self._len: list[int] = []
        df: Counter[str] = Counter()
        for a in self.articles:
            doc = terms(a.title) * 2 + [t for q in a.questions for t in terms(q)] * 2
            doc += terms(a.answer)
            tf = Counter(doc)
            self._tf.append(tf)
            self._len.append(len(doc))
            df.update(tf.keys())
        self._avg = (sum(self._len) / len(self._len)) if self._len else 0.0
        n = max(len(self.articles), MIN_DOCS)
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self._postings: dict[str, list[int]] = {}
        for i, tf in enumerate(self._tf):
            for t in tf:
                self._postings.setdefault(t, []).append(i)

    def __len__(self) -> int:
        return len(self.articles)

    def search(self, text: str, limit: int = 3) -> list[KbMatch]:
        """Articles ranked by BM25 against `text` (each query term counted once)."""
        query = [t for t in dict.fromkeys(terms(text)) if t in self._idf]
        scores: dict[int, float] = {}
        shared: dict[int, list[str]] = {}
        for t in query:
            idf = self._idf[t]
            for i in self._postings[t]:
                f = self._tf[i][t]
                norm = f + K1 * (1 - B + B * self._len[i] / self._avg)
                scores[i] = scores.get(i, 0.0) + idf * f * (K1 + 1) / norm
                shared.setdefault(i, []).append(t)
        ranked = sorted(scores, key=lambda i: (-scores[i], self.articles[i].id))[:limit]
        return [KbMatch(self.articles[i], scores[i], tuple(shared[i])) for i in ranked]

    def best(self, text: str, threshold: float, min_terms: int) -> KbMatch | None:
        """The top article when it clears the score threshold with enough shared terms."""
        top = self.search(text, limit=1)
        if top and top[0].score >= threshold and len(top[0].terms) >= min_terms:
            return top[0]
        return None
