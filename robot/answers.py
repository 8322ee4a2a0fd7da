"""Understanding a caller's answer, in English and French: yes/no, numbers (spoken or
written: "forty two", "42", "quarante-deux", "quatre-vingt-dix-sept"), dates ("tomorrow",
"next Monday", "March 3rd", "le 3 mars"), intents (keywords, or similarity to example
phrases) and free text (optionally constrained by a pattern).

On a partial transcript an answer is taken only when more words cannot change it: the
yes/no word opens the utterance, a number or date is followed by another word, an intent
is named by one of its keywords and no other intent comes close. Otherwise the caller's
turn is waited for, and the final decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from prompter.patterns import compile_pattern
from prompter.tokens import STOPWORDS, fold, stem
from robot.scenario import Intent, Step

_TOKEN = re.compile(r"\d+(?:[.,]\d+)?(?:st|nd|rd|th|er|e)?|[a-z]+")
PATTERN_TIMEOUT_S = 0.02

# --- yes / no ------------------------------------------------------------------------
_YES = {
    "yes",
    "yeah",
    "yep",
    "yup",
    "ya",
    "sure",
    "certainly",
    "absolutely",
    "definitely",
    "correct",
    "exactly",
    "okay",
    "ok",
    "affirmative",
    "indeed",
    "oui",
    "ouais",
    "ouep",
    "absolument",
    "exactement",
    "certainement",
    "evidemment",
    "effectivement",
    "volontiers",
    "parfait",
    "dac",
}
_YES_PHRASES = [
    ("of", "course"),
    ("that", "s", "right"),
    ("bien", "sur"),
    ("tout", "a", "fait"),
    ("d", "accord"),
    ("c", "est", "ca"),
    ("i", "will"),
    ("that", "s", "correct"),
    ("go", "ahead"),
    ("no", "problem"),
    ("pas", "de", "probleme"),
    ("sans", "probleme"),
]
_NO = {
    "no",
    "nope",
    "nah",
    "never",
    "negative",
    "wrong",
    "incorrect",
    "non",
    "nan",
    "jamais",
    "aucunement",
}
_NO_PHRASES = [
    ("pas", "du", "tout"),
    ("no", "thanks"),
    ("not", "at", "all"),
    ("absolutely", "not"),
    ("certainly", "not"),
]
_WEAK_NO = {"not", "don", "doesn", "can", "cannot", "won", "didn", "isn", "pas", "t"}
_WEAK_NO_PHRASES = [
    ("don", "t"),
    ("can", "t"),
    ("won", "t"),
    ("didn", "t"),
    ("isn", "t"),
    ("ne", "peux", "pas"),
    ("n", "est", "pas"),
    ("ne", "veux", "pas"),
]
_UNSURE_PHRASES = [
    ("not", "sure"),
    ("don", "t", "know"),
    ("maybe",),
    ("perhaps",),
    ("peut", "etre"),
    ("sais", "pas"),
    ("no", "idea"),
    ("not", "yet"),
    ("i", "m", "not", "sure"),
    ("pas", "sur"),
]

# --- numbers ---------------------------------------------------------------------------
_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "un": 1,
    "une": 1,
    "deux": 2,
    "trois": 3,
    "quatre": 4,
    "cinq": 5,
    "sept": 7,
    "huit": 8,
    "neuf": 9,
    "dix": 10,
    "onze": 11,
    "douze": 12,
    "treize": 13,
    "quatorze": 14,
    "quinze": 15,
    "seize": 16,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "vingt": 20,
    "vingts": 20,
    "trente": 30,
    "quarante": 40,
    "cinquante": 50,
    "soixante": 60,
    "septante": 70,
    "huitante": 80,
    "octante": 80,
    "nonante": 90,
}
_HUNDRED = {"hundred", "hundreds", "cent", "cents"}
_SCALES = {"thousand": 1000, "mille": 1000, "million": 1_000_000, "millions": 1_000_000}
_CONNECT = {"and", "et"}
_ORDINALS = {
    "first": "one",
    "second": "two",
    "third": "three",
    "fifth": "five",
    "eighth": "eight",
    "ninth": "nine",
    "twelfth": "twelve",
    "twentieth": "twenty",
    "thirtieth": "thirty",
    "premier": "un",
    "premiere": "une",
    "deuxieme": "deux",
    "troisieme": "trois",
}

# --- dates -----------------------------------------------------------------------------
_MONTHS = {
    "january": 1,
    "jan": 1,
    "february": 2,
    "feb": 2,
    "march": 3,
    "mar": 3,
    "april": 4,
    "apr": 4,
    "may": 5,
    "june": 6,
    "jun": 6,
    "july": 7,
    "jul": 7,
    "august": 8,
    "aug": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "october": 10,
    "oct": 10,
    "november": 11,
    "nov": 11,
    "december": 12,
    "dec": 12,
    "janvier": 1,
    "fevrier": 2,
    "mars": 3,
    "avril": 4,
    "mai": 5,
    "juin": 6,
    "juillet": 7,
    "aout": 8,
    "septembre": 9,
    "octobre": 10,
    "novembre": 11,
    "decembre": 12,
}
_WEEKDAYS = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
    "lundi": 0,
    "mardi": 1,
    "mercredi": 2,
    "jeudi": 3,
    "vendredi": 4,
    "samedi": 5,
    "dimanche": 6,
}
_NUMERIC_DATE = re.compile(
    r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b|\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b"
)


@dataclass(frozen=True)
class Answer:
    """What the caller's words meant for one question: the value and the words it came from."""

    value: Any
    text: str


def words(text: str) -> list[str]:
    """Folded tokens: lower case, no accents, digits kept whole ("42", "3rd")."""
    return _TOKEN.findall(fold(text).replace("’", "'"))


def _find(tokens: list[str], phrase: tuple[str, ...]) -> int:
    n = len(phrase)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n]) == phrase:
            return i
    return -1


# --- yes / no ------------------------------------------------------------------------


def _hits(
    toks: list[str], singles: set[str], phrases: list[tuple[str, ...]]
) -> list[tuple[int, int]]:
    spans = [(i, i + 1) for i, t in enumerate(toks) if t in singles]
    for p in phrases:
        for i in range(len(toks) - len(p) + 1):
            if tuple(toks[i : i + len(p)]) == p:
                spans.append((i, i + len(p)))
    return spans


def yes_no(text: str, *, partial: bool = False) -> str | None:
    """'yes', 'no', or None when the words say neither or both (or are unsure)."""
    toks = words(text)
    if not toks or any(_find(toks, p) >= 0 for p in _UNSURE_PHRASES):
        return None
    no = _hits(toks, _NO, _NO_PHRASES)
    yes = _hits(toks, _YES, _YES_PHRASES)
    # "certainly not", "I will not", "I can't": a yes word undone by what follows it
    yes = [
        (a, b)
        for a, b in yes
        if not (b < len(toks) and toks[b] in ("not", "t", "pas"))
        and not any(a >= x and b <= y and (x, y) != (a, b) for x, y in no)
    ]
    # "no problem", "pas de problème": a no word inside a yes phrase
    yes_cover = {i for a, b in yes if b - a > 1 for i in range(a, b)}
    no = [(a, b) for a, b in no if not (b - a == 1 and a in yes_cover)]
    if yes and no:
        return None
    if partial:
        # Only an opening yes/no word is safe: later words may qualify or revert it.
        first = min((a for a, _ in yes or no), default=99)
        return None if first > 1 else ("yes" if yes else "no")
    if yes:
        return "yes"
    if no:
        return "no"
    weak = any(t in _WEAK_NO for t in toks) or any(_find(toks, p) >= 0 for p in _WEAK_NO_PHRASES)
    return "no" if weak else None


# --- numbers -------------------------------------------------------------------------


def _ordinal(tok: str) -> str:
    if tok in _ORDINALS:
        return _ORDINALS[tok]
    m = re.fullmatch(r"(\d+)(?:st|nd|rd|th|er|e)", tok)
    if m:
        return m[1]
    if tok.endswith("ieme") and tok[:-4] in _UNITS:
        return tok[:-4]
    if tok.endswith("th") and tok[:-2] in _UNITS:
        return tok[:-2]
    return tok


def _number_at(toks: list[str], i: int) -> tuple[float, int] | None:
    """A number starting at token i: (value, index after its last token), else None."""
    tok = _ordinal(toks[i])
    if re.fullmatch(r"\d+(?:[.,]\d+)?", tok):
        return float(tok.replace(",", ".")), i + 1
    digits = _digit_string(toks, i)
    if digits is not None:
        return digits
    total = current = 0
    seen = False
    last_unit = False
    j = i
    while j < len(toks):
        t = _ordinal(toks[j])
        if t in _UNITS:
            v = _UNITS[t]
            if last_unit and v < 10 and current % 10 != 0:
                break  # "four two": two numbers, not one
            current += v
            last_unit = v < 10
        elif t in _TENS:
            v = _TENS[t]
            if v == 20 and current % 100 == 4 and seen:  # quatre-vingt(s) = 80
                current += 76
            elif seen and current % 100 != 0:
                break
            else:
                current += v
            last_unit = False
        elif t in _HUNDRED and (seen or (j > i and toks[j - 1] == "a") or t.startswith("cent")):
            current = (current or 1) * 100
            last_unit = False
        elif t in _SCALES:
            total += (current or 1) * _SCALES[t]
            current = 0
            last_unit = False
        elif (
            t in _CONNECT
            and seen
            and j + 1 < len(toks)
            and (_ordinal(toks[j + 1]) in _UNITS or _ordinal(toks[j + 1]) in _TENS)
        ):
            j += 1
            continue
        elif (
            t == "a"
            and not seen
            and j + 1 < len(toks)
            and (toks[j + 1] in _HUNDRED or toks[j + 1] in _SCALES)
        ):
            j += 1
            continue
        else:
            break
        seen = True
        j += 1
    if not seen:
        return None
    return float(total + current), j


def _digit_string(toks: list[str], i: int) -> tuple[float, int] | None:
    """ "four five six": digits read one by one (a customer number), two or more of them."""
    j = i
    out = ""
    while j < len(toks) and _UNITS.get(toks[j], 99) < 10:
        out += str(_UNITS[toks[j]])
        j += 1
    if len(out) < 2 or (
        j < len(toks) and (toks[j] in _TENS or toks[j] in _HUNDRED or toks[j] in _SCALES)
    ):
        return None
    return float(out), j


def find_number(text: str, *, partial: bool = False) -> tuple[float, str] | None:
    """The first number said or written in `text`, with the words it came from."""
    toks = words(text)
    for i in range(len(toks)):
        got = _number_at(toks, i)
        if got is None:
            continue
        value, end = got
        if partial and end >= len(toks):
            return None  # "forty" may yet become "forty two"
        return value, " ".join(toks[i:end])
    return None


def as_number(value: float) -> int | float:
    """42.0 -> 42 (slots hold integers when the caller said one)."""
    return int(value) if float(value).is_integer() else value


# --- dates ---------------------------------------------------------------------------


def _next_year_date(today: date, month: int, day: int, year: int | None) -> date | None:
    try:
        if year is not None:
            return date(year if year > 99 else 2000 + year, month, day)
        d = date(today.year, month, day)
        return d if d >= today else date(today.year + 1, month, day)
    except ValueError:
        return None


def find_date(
    text: str, today: date, language: str = "en", *, partial: bool = False
) -> tuple[date, str] | None:
    """The date the caller means, relative to `today` for "tomorrow", "next Monday"..."""
    folded = fold(text)
    m = _NUMERIC_DATE.search(folded)
    if m:
        if m[1]:
            d = _next_year_date(today, int(m[2]), int(m[3]), int(m[1]))
        else:
            a, b = int(m[4]), int(m[5])
            day, month = (a, b) if language == "fr" else (b, a)
            d = _next_year_date(today, month, day, int(m[6]) if m[6] else None)
        if d is not None and not (partial and folded[m.end() :].strip() == ""):
            return d, m[0]
    toks = words(text)
    for i, t in enumerate(toks):
        rest = len(toks) - i - 1
        if t in ("today", "aujourd", "tonight"):
            return (today, t) if not partial or rest > (1 if t == "aujourd" else 0) else None
        if t == "demain":
            if i > 0 and toks[i - 1] == "apres":
                return (today + timedelta(days=2), "apres demain") if not partial or rest else None
            return (today + timedelta(days=1), t) if not partial or rest else None
        if t == "tomorrow":
            if i >= 1 and toks[i - 1] == "after":
                return (
                    (today + timedelta(days=2), "day after tomorrow")
                    if not partial or rest
                    else None
                )
            return (today + timedelta(days=1), t) if not partial or rest else None
        if t in _WEEKDAYS:
            ahead = (_WEEKDAYS[t] - today.weekday() - 1) % 7 + 1
            later = 7 if (i > 0 and toks[i - 1] in ("after",)) else 0
            return (today + timedelta(days=ahead + later), t) if not partial or rest else None
        if t in _MONTHS and not (t == "may" and _number_near(toks, i) is None):
            got = _day_month(toks, i, today, partial)
            if got is not None:
                return got
        if (
            t in ("in", "dans")
            and i + 2 < len(toks)
            and toks[i + 2] in ("days", "jours", "day", "jour")
        ):
            n = _number_at(toks, i + 1)
            if n is not None and n[1] == i + 2:
                return (
                    (today + timedelta(days=int(n[0])), " ".join(toks[i : i + 3]))
                    if not partial or i + 3 < len(toks)
                    else None
                )
    return None


def _number_near(toks: list[str], i: int) -> tuple[int, int, int] | None:
    """(day, first, end) of a day number just after or just before month token i."""
    j = i + 1
    if j < len(toks) and toks[j] == "the":
        j += 1
    if j < len(toks):
        got = _number_at(toks, j)
        if got is not None and 1 <= got[0] <= 31:
            return int(got[0]), i, got[1]
    k = i - 1
    if k >= 0 and toks[k] == "of":
        k -= 1
    for start in range(max(0, k - 3), k + 1):
        got = _number_at(toks, start)
        if got is not None and got[1] == k + 1 and 1 <= got[0] <= 31:
            return int(got[0]), start, i + 1
    return None


def _day_month(toks: list[str], i: int, today: date, partial: bool) -> tuple[date, str] | None:
    near = _number_near(toks, i)
    if near is None:
        return None
    day, first, end = near
    year = None
    if end < len(toks) and re.fullmatch(r"\d{4}", toks[end]):
        year, end = int(toks[end]), end + 1
    if partial and end >= len(toks):
        return None
    d = _next_year_date(today, _MONTHS[toks[i]], day, year)
    return None if d is None else (d, " ".join(toks[first:end]))


# --- intents ---------------------------------------------------------------------------


def _stems(text: str) -> list[str]:
    return [stem(t) for t in words(text) if not t.isdigit()]


def _content(stems: list[str]) -> set[str]:
    return {s for s in stems if s not in STOPWORDS and len(s) > 1}


def intent_scores(text: str, intents: dict[str, Intent]) -> dict[str, tuple[float, bool]]:
    """Per intent: (score 0-1, matched by a keyword)."""
    said = _stems(text)
    said_set = _content(said)
    out: dict[str, tuple[float, bool]] = {}
    for name, intent in intents.items():
        best, by_keyword = 0.0, False
        for kw in intent.keywords:
            k = tuple(_stems(kw))
            if k and any(tuple(said[j : j + len(k)]) == k for j in range(len(said))):
                best, by_keyword = 1.0, True
                break
        if not by_keyword:
            for ex in intent.examples:
                e = _content(_stems(ex))
                if e and said_set:
                    overlap = len(e & said_set)
                    # share of the example said, damped when the answer is mostly other words
                    score = overlap / len(e) * min(1.0, 2 * overlap / len(said_set))
                    best = max(best, score)
        out[name] = (best, by_keyword)
    return out


def match_intent(
    text: str,
    intents: dict[str, Intent],
    *,
    partial: bool = False,
    threshold: float = 0.5,
    margin: float = 0.2,
) -> str | None:
    """The intent the answer names, or None when none is close enough or two are."""
    scores = sorted(intent_scores(text, intents).items(), key=lambda kv: -kv[1][0])
    if not scores:
        return None
    name, (best, by_kw) = scores[0]
    second = scores[1][1][0] if len(scores) > 1 else 0.0
    if partial:
        return name if by_kw and second < threshold else None
    if best >= threshold and best - second >= margin:
        return name
    return None


# --- one question ----------------------------------------------------------------------


def understand(
    step: Step, text: str, today: date, language: str = "en", *, partial: bool = False
) -> Answer | None:
    """The answer `text` gives to an ask step, or None (no match, or not yet certain)."""
    if not text.strip():
        return None
    if step.expect == "yes_no":
        v = yes_no(text, partial=partial)
        return None if v is None else Answer(v, text)
    if step.expect == "number":
        got = find_number(text, partial=partial)
        if got is None:
            return None
        value = as_number(got[0])
        if (step.min is not None and value < step.min) or (
            step.max is not None and value > step.max
        ):
            return None
        return Answer(value, got[1])
    if step.expect == "date":
        d = find_date(text, today, language, partial=partial)
        return None if d is None else Answer(d[0], d[1])
    if step.expect == "intent":
        name = match_intent(text, step.intents, partial=partial)
        return None if name is None else Answer(name, text)
    if partial:
        return None  # free text: the whole turn is the answer
    if step.pattern is None:
        return Answer(text.strip(), text.strip())
    try:
        m = compile_pattern(step.pattern).search(fold(text), timeout=PATTERN_TIMEOUT_S)
    except TimeoutError:
        return None
    if m is None:
        return None
    value = m.groupdict().get("value") or m.group(0)
    return Answer(value.strip(), text.strip())


def dtmf_answer(step: Step, digits: str) -> Answer | None:
    """An answer typed on the keypad: a mapped key, or digits for a number."""
    if step.expect == "number":
        d = digits.rstrip("#")
        if not d.isdigit():
            return None
        value = int(d)
        if (step.min is not None and value < step.min) or (
            step.max is not None and value > step.max
        ):
            return None
        return Answer(value, digits)
    if len(digits) == 1 and digits in step.dtmf:
        return Answer(step.dtmf[digits], digits)
    return None
