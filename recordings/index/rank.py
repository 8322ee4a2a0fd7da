"""Relevance of a window of matches, scored in Python when there are too many to rank in SQL.

FTS5's bm25 first walks every document of every query phrase (for its IDF), then scores
each match: for a query whose words fill most utterances ("je", "de la") that costs
50-300 ms at a million utterances whatever the page size. Past the count cap the index
therefore ranks only the newest matches (a bounded window) with this BM25 variant: the
same term-frequency and length terms, every positive query phrase weighted alike (the
window holds matches only, so it cannot tell how rare a phrase is). For a one-phrase
query the order is bm25's order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from recordings.index.query import Node, positive_terms

K1 = 1.2
B = 0.75
# Combining marks (what NFD splits off accented letters), dropped as remove_diacritics does.
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
# unicode61 keeps letters and digits as token characters; everything else separates.
_SEPARATORS = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """The text's words lower-cased, without diacritics, joined by single spaces.

    What `unicode61 remove_diacritics 2` indexes.
    """
    bare = _MARKS.sub("", unicodedata.normalize("NFD", text.lower()))
    return _SEPARATORS.sub(" ", bare).strip()


@lru_cache(maxsize=100_000)
def _folded_words(chunk: str) -> tuple[str, ...]:
    return tuple(fold(chunk).split())


def tokens(text: str) -> list[str]:
    """The folded words of a text.

    Folded per whitespace-separated chunk through a cache: transcripts reuse a small
    vocabulary, and folding whole texts with regexes cost 13 us each (a window of 1,000
    matches: 13 ms).
    """
    out: list[str] = []
    for chunk in text.split():
        out.extend(_folded_words(chunk))
    return out


@dataclass(frozen=True)
class Phrase:
    """A positive query term as folded words; `prefix`: the last word matches as a prefix."""

    words: tuple[str, ...]
    prefix: bool

    def pattern(self) -> re.Pattern[str]:
        """Matches the phrase in a text of folded words joined by single spaces."""
        body = " ".join(re.escape(w) for w in self.words)
        return re.compile(rf"(?<!\S){body}" + (r"\S*" if self.prefix else r"(?!\S)"))


def phrases(query: Node) -> list[Phrase]:
    """The query's positive terms (not those under NOT) as folded word sequences."""
    out: list[Phrase] = []
    for term in positive_terms(query):
        words = tuple(tokens(term.text))
        if words:
            out.append(Phrase(words, term.prefix))
    return out


def _counter(phrase: Phrase) -> Callable[[list[str], str], int]:
    """How to count a phrase in a document, given as words and as their joined text."""
    if len(phrase.words) == 1:
        word = phrase.words[0]
        if phrase.prefix:
            return lambda words, _: sum(1 for w in words if w.startswith(word))
        return lambda words, _: words.count(word)
    pattern = phrase.pattern()
    return lambda _, text: len(pattern.findall(text))


def occurrences(doc: list[str], phrase: Phrase) -> int:
    """How often the phrase occurs in a tokenised document."""
    return _counter(phrase)(doc, " ".join(doc))


def score_window(texts: list[str], query: Node) -> list[float]:
    """BM25-like scores (higher is better) of matching texts, lengths relative to the window."""
    if not texts:
        return []
    wanted = phrases(query)
    counters = [_counter(p) for p in wanted]
    joined = any(len(p.words) > 1 for p in wanted)  # only phrases need the joined text
    docs = [tokens(t) for t in texts]
    avgdl = max(1.0, sum(len(d) for d in docs) / len(docs))
    scores: list[float] = []
    for doc in docs:
        norm = K1 * (1 - B + B * len(doc) / avgdl)
        text = " ".join(doc) if joined else ""
        s = 0.0
        for count in counters:
            tf = count(doc, text)
            if tf:
                s += tf * (K1 + 1) / (tf + norm)
        scores.append(s)
    return scores
