"""Text normalisation for evaluation (WER): case, punctuation, accents, numbers.

Whisper writes "42" where a script says "forty two", "Mr." where it says "mister":
both sides go through `normalise` so only real recognition errors count.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ABBREV = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay"}
_PUNCT = re.compile(r"[^\w\s']")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_CURRENCY = re.compile(r"([$€£])\s?(\d+(?:[.,]\d+)?)")
_CURRENCY_NAMES = {"$": "dollars", "€": "euros", "£": "pounds"}
# "10:30" and Whisper's British "10.30" are both "ten thirty"; "9am", "9 a.m." are "nine am".
_CLOCK = re.compile(r"\b([01]?\d|2[0-3])[:.]([0-5]\d)\b(?![.,]\d)")
_MERIDIEM = re.compile(r"(?<=\d)\s?([ap])\.?\s?m\b\.?")
# Whisper groups a number said digit by digit as "4-5678", "4567 8" or "06 12 34 56 78":
# with five digits or more it is a phone or customer number, read digit by digit ("3-5", a
# range, is not).
_DIGIT_GROUPS = re.compile(r"\b\d+(?:(?:\s?-\s?|\s)\d+)+\b")
# A script's "I am" is Whisper's "I'm" (and back): both sides get the long form.
_CONTRACTIONS = {
    "i'm": "i am",
    "you're": "you are",
    "we're": "we are",
    "they're": "they are",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "what's": "what is",
    "here's": "here is",
    "let's": "let us",
    "i've": "i have",
    "we've": "we have",
    "you've": "you have",
    "i'll": "i will",
    "we'll": "we will",
    "you'll": "you will",
    "it'll": "it will",
    "i'd": "i would",
    "we'd": "we would",
    "you'd": "you would",
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "weren't": "were not",
    "haven't": "have not",
    "hasn't": "has not",
    "couldn't": "could not",
    "wouldn't": "would not",
    "shouldn't": "should not",
}


def number_to_words(n: int) -> str:
    """English words of a non-negative integer: 42 -> 'forty two'."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            words = f"{number_to_words(head)} {name}"
            return words if rest == 0 else f"{words} {number_to_words(rest)}"
    raise AssertionError("unreachable")


def _spell_number(match: re.Match[str]) -> str:
    text = match.group(0).replace(",", ".") if match.group(0).count(",") == 1 else match.group(0)
    if "." in text:
        whole, frac = text.split(".", 1)
        return f"{number_to_words(int(whole))} point " + " ".join(_ONES[int(d)] for d in frac)
    if len(text) > 1 and text.startswith("0") or len(text) >= 5:
        # Codes, customer and phone numbers are said digit by digit in calls.
        return " ".join(_ONES[int(d)] for d in text)
    return number_to_words(int(text))


def _join_code(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return digits if len(digits) >= 5 else match.group(0)


def fold_accents(text: str) -> str:
    """'résiliation' -> 'resiliation'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalise(text: str) -> str:
    """Lower case, no accents, no punctuation, numbers as English words, single spaces."""
    t = fold_accents(text).lower().replace("\u2019", "'")
    t = _MERIDIEM.sub(lambda m: f" {m.group(1)}m", t)
    t = _CLOCK.sub(
        lambda m: f"{m.group(1)} " + ("" if m.group(2) == "00" else f"{int(m.group(2))}"), t
    )
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 1,000 -> 1000
    t = _DIGIT_GROUPS.sub(_join_code, t)
    t = _CURRENCY.sub(lambda m: f"{m.group(2)} {_CURRENCY_NAMES[m.group(1)]} ", t)
    t = t.replace("%", " percent")
    t = _NUMBER.sub(_spell_number, t)
    t = t.replace("-", " ")
    t = _PUNCT.sub(" ", t)
    words = []
    for w in t.split():
        w = _CONTRACTIONS.get(w, w).strip("'")
        words.append(_ABBREV.get(w, w))
    return " ".join(w for w in words if w)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference`, both normalised (0.0 = perfect)."""
    ref = normalise(reference).split()
    hyp = normalise(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
