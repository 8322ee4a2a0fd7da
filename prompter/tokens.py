"""Text as the souffleur compares it: accent-folded, lower-cased words with light stems.

One stemmer serves English and French (calls switch language, partials are short): it
strips one common suffix, then trailing 'e's and a doubled final consonant, so that
cancel, cancels, cancelling, cancelled, cancellation and résilier, résilie, résiliation,
résiliée each share a stem. Both a playbook's phrases and the transcript go through it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")
_VOWELS = frozenset("aeiouy")
# Longest first; only one is stripped. Kept short on purpose: conflating too much makes
# phrases fire on unrelated words.
_SUFFIXES = tuple(
    sorted(
        [
            "issements",
            "issement",
            "ations",
            "ation",
            "ements",
            "ement",
            "ments",
            "ment",
            "ings",
            "ing",
            "ees",
            "ers",
            "er",
            "ez",
            "es",
            "ed",
            "ee",
            "s",
            "e",
        ],
        key=len,
        reverse=True,
    )
)
_MIN_STEM = 3

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves im ive id dont cant please hello hi yes ok okay um uh well like want would
    au aux avec ce ces cet cette dans de des du elle elles en et eux il ils je la le les leur
    leurs lui ma mais me meme mes moi mon ne nos notre nous on ou par pas pour qu que qui sa se
    ses son sur ta te tes toi ton tu un une vos votre vous c d j l m n s t y est sont suis es
    etait ete avoir etre ai as avez avons ont fait faire bonjour merci oui non alors donc euh
    voudrais veux voulais peux puis comment quoi quel quelle quels quelles
    """.split()
)


def fold(text: str) -> str:
    """Lower-case and strip accents (é -> e, Ç -> c); one output char per input char or more."""
    return "".join(_fold_char(c) for c in text)


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    if c.isascii():
        return c.lower()
    base = "".join(x for x in unicodedata.normalize("NFKD", c) if not unicodedata.combining(x))
    return base.lower()


def strip_accents(text: str) -> str:
    """Accents stripped, case and ASCII kept (for regexes, where case carries meaning: \\D)."""
    return "".join(
        c
        if c.isascii()
        else _fold_char(c)
        if c.islower() or not c.isalpha()
        else _fold_char(c).upper()
        for c in text
    )


def fold_with_map(text: str) -> tuple[str, list[int]]:
    """Folded text and, for each folded char, the index of the original char it came from."""
    out: list[str] = []
    where: list[int] = []
    for i, c in enumerate(text):
        piece = _fold_char(c)
        out.append(piece)
        where.extend([i] * len(piece))
    return "".join(out), where


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Light English/French stem of one folded word."""
    w = word.replace("'", "").replace("-", "")
    if len(w) <= _MIN_STEM:
        return w
    for suf in _SUFFIXES:
        if w.endswith(suf) and len(w) - len(suf) >= _MIN_STEM:
            w = w[: -len(suf)]
            break
    while w.endswith("e") and len(w) > _MIN_STEM:
        w = w[:-1]
    if len(w) > _MIN_STEM and w[-1] == w[-2] and w[-1].isalpha() and w[-1] not in _VOWELS:
        w = w[:-1]
    if w.endswith("y") and len(w) > _MIN_STEM:
        w = w[:-1] + "i"
    return w


@dataclass(frozen=True)
class Token:
    """One word of a text: its folded form, its stem and its span in the folded text."""

    folded: str
    stem: str
    start: int
    end: int


def tokenize(folded: str) -> list[Token]:
    """Words of already folded text; apostrophes split French elisions (l'abonnement)."""
    tokens: list[Token] = []
    for m in _WORD.finditer(folded):
        start = m.start()
        for part in re.split(r"(['-])", m.group()):
            if part and part not in "'-":
                tokens.append(Token(part, stem(part), start, start + len(part)))
            start += len(part)
    return tokens


def stems_of(text: str) -> list[str]:
    """Stems of every word of raw text (a playbook phrase, a KB article)."""
    return [t.stem for t in tokenize(fold(text))]
