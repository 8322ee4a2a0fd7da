"""Text normalisation for evaluation (WER): case, punctuation, accents, numbers, fillers.

Whisper writes "42" where a script says "forty two", "Mr." where it says "mister" and
"center" where it says "centre", and drops most "um"s a speaker says: both sides go
through `normalise` so only real recognition errors count. English and French; French
numbers are spelled by num2words, and the word counts come from jiwer (its C edit distance
keeps a 20-minute leg to milliseconds).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import jiwer
from num2words import num2words
from whisper_normalizer.english import EnglishSpellingNormalizer

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ABBREV = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay"}
# One word, two spellings: a script's "centre" is Whisper's "center", its "Alright" one
# decode's "All right". openai/whisper's English normaliser maps British to American
# spelling (its list, packaged by whisper-normalizer); "alright" is not in that list.
_SPELLING = {**EnglishSpellingNormalizer().mapping, "alright": "all right"}
_PUNCT = re.compile(r"[^\w\s']")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
# "10,000" and "1,250.50" are amounts, never codes said digit by digit
_THOUSANDS = re.compile(r"\b\d{1,3}(?:,\d{3})+(?:\.\d+)?\b")
_CURRENCY = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?)")
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


def _decimal(whole: str, frac: str) -> str:
    """'12', '50' -> 'twelve point five zero' (the digits after the point one by one)."""
    words = number_to_words(int(whole))
    return f"{words} point " + " ".join(_ONES[int(d)] for d in frac) if frac else words


def _spell_number(match: re.Match[str]) -> str:
    text = match.group(0).replace(",", ".") if match.group(0).count(",") == 1 else match.group(0)
    if "." in text:
        return _decimal(*text.split(".", 1))
    if len(text) > 1 and text.startswith("0") or len(text) >= 5:
        # Codes, customer and phone numbers are said digit by digit in calls.
        return " ".join(_ONES[int(d)] for d in text)
    return number_to_words(int(text))


def _spell_amount(match: re.Match[str]) -> str:
    whole, _, frac = match.group(0).replace(",", "").partition(".")
    return _decimal(whole, frac)


def _join_code(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return digits if len(digits) >= 5 else match.group(0)


def fold_accents(text: str) -> str:
    """'résiliation' -> 'resiliation'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# Hesitations: whether a speaker's "um" is written is a style choice, not recognition (as
# openai/whisper's English normaliser).
_FILLERS = {
    "en": {"um", "umm", "uh", "uhm", "hmm", "hm", "mm", "mhm", "er", "erm", "ah"},
    "fr": {"euh", "heu", "hum", "hmm", "hm", "mm", "mhm", "bah"},
}
_FR_ORDINAL = re.compile(r"\b(\d+)(?:er|re|e|eme|ieme)\b")
_FR_CLOCK = re.compile(r"\b([01]?\d|2[0-3])\s?h\s?([0-5]\d)?\b")
_FR_CURRENCY = {"€": "euros", "$": "dollars", "£": "livres"}


def _spell_number_fr(match: re.Match[str]) -> str:
    text = match.group(0)
    if "," in text or "." in text:
        whole, frac = re.split(r"[.,]", text, maxsplit=1)
        return f"{num2words(int(whole), lang='fr')} virgule {num2words(int(frac), lang='fr')}"
    if len(text) > 1 and text.startswith("0") or len(text) >= 5:
        return " ".join(num2words(int(d), lang="fr") for d in text)
    return str(num2words(int(text), lang="fr"))


def _normalise_fr(text: str) -> str:
    t = fold_accents(text).lower().replace("\u2019", "'")
    t = _FR_CLOCK.sub(lambda m: f"{m.group(1)} heures {m.group(2) or ''}", t)
    t = _FR_ORDINAL.sub(lambda m: num2words(int(m.group(1)), lang="fr", to="ordinal"), t)
    t = re.sub(r"(?<=\d)[\s.](?=\d{3}\b)", "", t)  # 1 000 / 1.000 -> 1000
    t = _DIGIT_GROUPS.sub(_join_code, t)
    for sign, name in _FR_CURRENCY.items():
        t = t.replace(sign, f" {name} ")
    t = t.replace("%", " pour cent")
    t = re.sub(r"\d+(?:,\d+)?", _spell_number_fr, t)
    t = re.sub(r"[-']", " ", t)  # "quatre-vingt", "l'appareil": one spelling either way
    t = _PUNCT.sub(" ", t)
    return " ".join(w for w in t.split() if w not in _FILLERS["fr"])


def normalise(text: str, language: str = "en") -> str:
    """Lower case, no accents, no punctuation, numbers as words, no fillers, single spaces.

    `language` is "en" or "fr" (anything else is read as English).
    """
    if language == "fr":
        return _normalise_fr(text)
    t = fold_accents(text).lower().replace("\u2019", "'")
    t = _MERIDIEM.sub(lambda m: f" {m.group(1)}m", t)
    t = _CLOCK.sub(
        lambda m: f"{m.group(1)} " + ("" if m.group(2) == "00" else f"{int(m.group(2))}"), t
    )
    t = _DIGIT_GROUPS.sub(_join_code, t)
    t = _CURRENCY.sub(lambda m: f"{m.group(2)} {_CURRENCY_NAMES[m.group(1)]} ", t)
    t = _THOUSANDS.sub(_spell_amount, t)
    t = t.replace("%", " percent")
    t = _NUMBER.sub(_spell_number, t)
    t = t.replace("-", " ")
    t = _PUNCT.sub(" ", t)
    words = []
    for w in t.split():
        w = _CONTRACTIONS.get(w, w).strip("'")
        w = _ABBREV.get(w, w)
        words.append(_SPELLING.get(w, w))
    return " ".join(w for w in words if w and w not in _FILLERS["en"])


@dataclass(frozen=True)
class WordErrors:
    """Word errors of a hypothesis against its reference; sums over a set give its WER."""

    errors: int
    words: int  # in the reference
    hypothesis_words: int

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.errors + other.errors,
            self.words + other.words,
            self.hypothesis_words + other.hypothesis_words,
        )

    @property
    def rate(self) -> float:
        """Errors per reference word (0.0 = perfect; with no reference, 1.0 if anything said)."""
        if not self.words:
            return 0.0 if not self.hypothesis_words else 1.0
        return self.errors / self.words


def word_errors(reference: str, hypothesis: str, language: str = "en") -> WordErrors:
    """Substitutions, deletions and insertions after normalising both sides."""
    ref = normalise(reference, language)
    hyp = normalise(hypothesis, language)
    n_ref, n_hyp = len(ref.split()), len(hyp.split())
    if not n_ref or not n_hyp:
        return WordErrors(max(n_ref, n_hyp), n_ref, n_hyp)
    out = jiwer.process_words(ref, hyp)
    return WordErrors(out.substitutions + out.deletions + out.insertions, n_ref, n_hyp)


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Word error rate of `hypothesis` against `reference`, both normalised (0.0 = perfect)."""
    return word_errors(reference, hypothesis, language).rate
