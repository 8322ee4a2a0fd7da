"""Snippets of a page of hits, made in Python from the texts the page already holds.

FTS5's snippet() runs the whole match again for each row id it is given (0.4 ms a row, 1.5
ms for a prefix query at a million utterances), which cost more than the rest of a search.
Matching here uses the folding of `recordings.index.rank`, so "resilier" marks "Résilier".
"""

from __future__ import annotations

import re

from recordings.index.query import Node
from recordings.index.rank import Phrase, fold, phrases

ELLIPSIS = "…"
_WORD = re.compile(r"[^\W_]+")


def _hit_tokens(words: list[str], wanted: list[Phrase]) -> list[bool]:
    """Which tokens belong to an occurrence of a query phrase."""
    hit = [False] * len(words)
    for p in wanted:
        n = len(p.words)
        for i in range(len(words) - n + 1):
            if list(p.words[:-1]) != words[i : i + n - 1]:
                continue
            last = words[i + n - 1]
            if last.startswith(p.words[-1]) if p.prefix else last == p.words[-1]:
                for k in range(i, i + n):
                    hit[k] = True
    return hit


def _best_window(hit: list[bool], size: int) -> int:
    """First token of the `size`-token window holding the most hits (earliest on ties)."""
    if len(hit) <= size:
        return 0
    best = count = sum(hit[:size])
    start = 0
    for i in range(1, len(hit) - size + 1):
        count += hit[i + size - 1] - hit[i - 1]
        if count > best:
            best, start = count, i
    return start


def make_snippet(text: str, query: Node, open_mark: str, close_mark: str, size: int) -> str:
    """The text (or its best `size`-token stretch, '…' where cut) with matches marked."""
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    words = [fold(text[a:b]) for a, b in spans]
    hit = _hit_tokens(words, phrases(query))
    start = _best_window(hit, size)
    end = min(len(spans), start + size)
    out: list[str] = [ELLIPSIS] if start > 0 else []
    pos = spans[start][0] if start > 0 else 0
    for k in range(start, end):
        a, b = spans[k]
        out.append(text[pos:a])
        opens = hit[k] and (k == start or not hit[k - 1])
        closes = hit[k] and (k == end - 1 or not hit[k + 1])
        out.append((open_mark if opens else "") + text[a:b] + (close_mark if closes else ""))
        pos = b
    if end < len(spans):
        out.append(ELLIPSIS)
    else:
        out.append(text[pos:])
    return "".join(out)
