"""Personal data out of transcripts before anything is stored, indexed or shown: payment
card numbers (Luhn), IBANs (ISO 13616 mod 97), French social security numbers (NIR, with
its key), phone numbers (the `phonenumbers` library, French and North American), e-mail
addresses (also spoken: "at", "arobase", "dot", "point"), and a date of birth after its cue
words, in French and English. Each is replaced by a typed mask ([CARD], [IBAN], [NIR],
[PHONE], [EMAIL], [DOB]); a word of the utterance inside a mask is replaced by it, with
the masked words' times.

Numbers are read across the words they were said in: Whisper writes a card said digit by
digit as "4 1 1 1 ...", in groups as "4111 1111 ...", or with dashes, an IBAN spelled as
"F-R-7 6 ...", French groups as tens and units ("40 9"); digit words (en, fr) count as
digits; a number cut by a breath is read across a leg's utterances that follow each other.
A run of digits is masked only when its checksum holds (cards, IBANs, NIRs), when it
follows its cue words (a misheard card or IBAN), when it is as long as only a bank account
is, or when it is a valid phone number: prices, dates and order numbers stay. A number
masked once in a call is masked again when it is said again, even misheard. Key presses are
read the same way (`redact_presses`).
`masked_spans` says what kind was masked where: the audit, and where recordings/audio_masks
silences the audio."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from pipeline.events import DtmfReceived, Utterance, Word
from pipeline.logs import ctx
from pipeline.services import Services

log = logging.getLogger(__name__)

DIGIT_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "zéro": "0", "un": "1", "deux": "2", "trois": "3", "quatre": "4", "cinq": "5",
    "sept": "7", "huit": "8", "neuf": "9",
}  # fmt: skip
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SPOKEN_AT = re.compile(r"\s+(?:at|arobase)\s+", re.I)
_SPOKEN_DOT = re.compile(r"\s+(?:dot|point)\s+", re.I)
# A number said right after these words is a card even when its checksum fails: speech
# recognition drops or doubles a digit of a long number ("4,111 1111 1111 11 11 11"),
# and a card misheard is still a card. Without a cue only the checksum decides.
_CARD_CUES = re.compile(r"\b(?:cards?|cartes?|visa|mastercard|amex|cb)\b", re.I)
CUE_REACH = 40  # characters between the cue and the number
_IBAN_CUES = re.compile(r"\b(?:iban\w*|rib|account|compte)\b", re.I)
IBAN_SLACK = 2  # digits an IBAN said after its cue may have lost or gained
# A French RIB is 23 digits, a French IBAN's 25: three lost still leave this many.
ACCOUNT_DIGITS = 20
_DOB_CUES = re.compile(r"\b(?:date of birth|born on|born|date de naissance|née? le)\b[\s:,]*", re.I)
_DATE_AFTER = re.compile(
    r"(?:[\w\-/.,]+\s*){1,6}?(?:\b(?:19|20)\d{2}\b|\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b)"
)


# IBAN lengths of the countries a French operator's callers bank in (ISO 13616 registry).
IBAN_LENGTHS = {
    "FR": 27, "MC": 27, "DE": 22, "BE": 16, "LU": 20, "CH": 21, "ES": 24, "IT": 27,
    "PT": 25, "NL": 18, "GB": 22, "IE": 22, "AT": 20, "PL": 28,
}  # fmt: skip


@dataclass(frozen=True)
class Found:
    """One piece of personal data: its kind and its characters in the text."""

    kind: str
    start: int
    end: int


def luhn(digits: str) -> bool:
    """The payment card checksum."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """ISO 13616: the country and check digits moved to the end, letters as numbers,
    mod 97 is 1."""
    s = text.upper()
    moved = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return len(s) >= 15 and int(number) % 97 == 1


def nir_ok(digits: str) -> bool:
    """A French NIR: 13 digits (sex 1 or 2 first) and the key 97 - (number mod 97)."""
    return (
        len(digits) == 15 and digits[0] in "12" and 97 - int(digits[:13]) % 97 == int(digits[13:])
    )


# French says two-digit groups as tens and units ("quarante-neuf"), which Whisper may write
# "40 9": a tens followed by a digit said as its own word is also read as their sum.
_TENS = frozenset({"20", "30", "40", "50", "60", "70", "80", "90"})
_TOKENS = re.compile(r"\d+|[A-Za-zÀ-ÿ]+|[^\sA-Za-zÀ-ÿ\d]")
_SEPARATORS = frozenset("-.,/")


@dataclass(frozen=True)
class Run:
    """Characters said as one code across words: `chars` (digits, and the capital letters
    an IBAN spells), `at[i]` where the word of chars[i] starts in the text, `end` where the
    run's last word ends."""

    chars: str
    at: tuple[int, ...]
    end: int

    def span(self, i: int, j: int) -> tuple[int, int]:
        """Text positions of chars[i:j]."""
        return self.at[i], self.at[j] if j < len(self.at) else self.end


def _runs(text: str, *, letters: bool) -> list[Run]:
    """Runs of digits (with `letters`, also capitals in words of up to two, "FR", "F R",
    and letters spelled one by one in lower case, "f, r", as Whisper sometimes writes them)
    across words, digit words and the separators of numbers said in groups."""
    runs: list[Run] = []
    chars: list[str] = []
    at: list[int] = []
    end = -1
    for m in _TOKENS.finditer(text):
        tok = m.group()
        value = tok if tok.isdigit() else DIGIT_WORDS.get(tok.lower())
        if value is None and letters and tok.isascii() and tok.isalpha():
            if tok.isupper() and len(tok) <= 2:
                value = tok
            elif len(tok) == 1:
                value = tok.upper()
        if value is not None:
            chars.extend(value)
            at.extend([m.start()] * len(value))
            end = m.end()
        elif not (tok in _SEPARATORS and chars):
            if chars:
                runs.append(Run("".join(chars), tuple(at), end))
            chars, at = [], []
    if chars:
        runs.append(Run("".join(chars), tuple(at), end))
    return runs


def _readings(run: Run) -> list[str]:
    """The digits of a run as written, and read as French tens and units when that differs
    ("40 9" is 49)."""
    text, at = run.chars, run.at
    joined: list[str] = []
    i = 0
    while i < len(text):
        unit = i + 2
        if (
            text[i : i + 2] in _TENS
            and at[i + 1] == at[i]  # the tens is one word ...
            and unit < len(text)
            and at[unit] != at[i]  # ... the unit the next one, a single digit
            and (unit + 1 == len(text) or at[unit + 1] != at[unit])
        ):
            joined += [text[i], text[unit]]
            i = unit + 1
        else:
            joined.append(text[i])
            i += 1
    reading = "".join(joined)
    return [text] if reading == text else [text, reading]


def _numbers(text: str, *, partial: bool) -> list[Found]:
    """Cards and NIRs said across words; with `partial` (a live partial: the number may not
    be finished), any run of four digits or more after a card's cue."""
    found: list[Found] = []
    for run in _runs(text, letters=False):
        s = run.at[0]
        card_said = _CARD_CUES.search(text, max(0, s - CUE_REACH), s) is not None
        for digits in _readings(run):
            if 13 <= len(digits) <= 19 and (luhn(digits) or card_said):
                found.append(Found("CARD", s, run.end))
            elif nir_ok(digits):
                found.append(Found("NIR", s, run.end))
            elif partial and card_said and len(digits) >= 4:
                found.append(Found("CARD", s, run.end))
            else:
                continue
            break
    return found


def _ibans(text: str) -> list[Found]:
    """IBANs written ("FR76 3000 ..."), spelled ("F R 7 6 ...") or dashed: the country
    fixes the length, the check digits decide. Like a card's, an IBAN misheard by a digit
    or two is still masked when its cue was said, its country spelled letter by letter or
    its digits said one by one: nothing else said sounds like that. A country spelled but
    misheard ("S, R, 7, 6, ...": French "F" and "S" sound alike on a phone line) is masked
    when the digits after it are as many as some country's IBAN holds."""
    found: list[Found] = []
    for run in _runs(text, letters=True):
        for m in re.finditer(r"[A-Z]{2}\d{2}", run.chars):
            a = m.start()
            letters_spelled = run.at[a + 1] != run.at[a]
            want = IBAN_LENGTHS.get(m.group()[:2])
            if want is None:
                if letters_spelled and _misheard_country(run, a):
                    found.append(Found("IBAN", run.at[a], run.end))
                    break
                continue
            if len(run.chars) - a >= want and iban_ok(run.chars[a : a + want]):
                found.append(Found("IBAN", *run.span(a, a + want)))
                break
            s = run.at[a]
            cued = _IBAN_CUES.search(text, max(0, s - CUE_REACH), s) is not None
            spelled = letters_spelled or _one_by_one(run, a + 2)
            if (cued or spelled) and abs(len(run.chars) - a - want) <= IBAN_SLACK:
                found.append(Found("IBAN", s, run.end))
                break
    return found


def _accounts(text: str) -> list[Found]:
    """Digits said one by one, ACCOUNT_DIGITS or more of them: nothing but a bank account
    is that long (a card has at most 19, a NIR 15, a phone 15), so it is masked as an IBAN
    whatever was heard of its country ("F-R-SET, 6-3-0-0-...", "F-L-R-7-6-...") and however
    many digits recognition lost or gained."""
    return [
        Found("IBAN", run.at[0], run.end)
        for run in _runs(text, letters=False)
        if len(run.chars) >= ACCOUNT_DIGITS and _one_by_one(run, 0)
    ]


def _one_by_one(run: Run, a: int) -> bool:
    """Whether the run's characters from `a` on were said one by one (each its own word, as
    Whisper writes digits spelled out: "6-3-0-0" or "1, 1, 2"), not in groups ("3000")."""
    return len(set(run.at[a:])) >= 0.8 * len(run.at[a:])


def _misheard_country(run: Run, a: int) -> bool:
    """The two letters at `a` (no country) are not inside a longer code of letters, and
    only digits follow, as many as an IBAN of some country holds (within the slack)."""
    rest = run.chars[a + 2 :]
    return (
        (a == 0 or not run.chars[a - 1].isalpha())
        and rest.isdigit()
        and any(abs(len(rest) + 2 - n) <= IBAN_SLACK for n in IBAN_LENGTHS.values())
    )


def find(text: str, *, partial: bool = False, joined: bool = False) -> list[Found]:
    """The personal data in `text`, left to right, not overlapping. A text `joined` from
    several utterances is not read for account numbers: there two numbers said one after
    the other run together into a run as long as one."""
    found = _ibans(text) + _numbers(text, partial=partial)
    if not joined:
        found += _accounts(text)
    for region in ("FR", "US"):
        for number in phonenumbers.PhoneNumberMatcher(text, region):
            found.append(Found("PHONE", number.start, number.end))
    spoken = _SPOKEN_DOT.sub(".", _SPOKEN_AT.sub("@", text))
    if spoken == text:
        found += [Found("EMAIL", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    elif _EMAIL.search(spoken):
        # spoken addresses: mask from the word before "at" to the end of the domain
        spoken_address = (
            r"(?:\S+\s+(?:dot|point)\s+)*\S+\s+(?:at|arobase)\s+\S+(?:\s+(?:dot|point)\s+\S+)+"
        )
        for m in re.finditer(spoken_address, text, re.I):
            found.append(Found("EMAIL", m.start(), m.end()))
    for cue in _DOB_CUES.finditer(text):
        date = _DATE_AFTER.match(text, cue.end())
        if date:
            found.append(Found("DOB", date.start(), date.end()))
    return _distinct(found)


def _distinct(found: Sequence[Found]) -> list[Found]:
    """Left to right, none inside another (a card is also a phone-like number)."""
    out: list[Found] = []
    for f in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if not out or f.start >= out[-1].end:
            out.append(f)
    return out


def redact_text(text: str) -> tuple[str, list[str]]:
    """`text` with each piece of personal data replaced by its mask; the kinds masked."""
    found = find(text)
    return _masked(text, found), [f.kind for f in found]


def _masked(text: str, found: list[Found]) -> str:
    for f in reversed(found):
        text = text[: f.start] + f"[{f.kind}]" + text[f.end :]
    return text


def redact_utterance(
    u: Utterance, also: Sequence[Found] = (), *, partial: bool = False
) -> tuple[Utterance, list[str]]:
    """The utterance with its text and words masked (a masked stretch of words becomes one
    word, the mask, spanning their times), `also` masked besides what its own text shows;
    the kinds masked."""
    return _with_masks(u, [*find(u.text, partial=partial), *also])


def _with_masks(u: Utterance, found: Sequence[Found]) -> tuple[Utterance, list[str]]:
    """The utterance with `found` masked (overlaps resolved); the kinds masked."""
    found = _distinct(found)
    if not found:
        return u, []
    words = _mask_words(u.words, u.text, found)
    masked = u.model_copy(update={"text": _masked(u.text, found), "words": words})
    return masked, [f.kind for f in found]


# A number may be said across several utterances of a leg (a breath between its groups
# cuts it): a leg's utterances that follow each other within this gap, one ending and the
# next starting with a digit (or the capitals an IBAN spells), are read as one text.
ACROSS_GAP_S = 3.0
MAX_PIECES = 4
_DIGIT_WORD = "|".join(DIGIT_WORDS)
_ENDS_IN_CODE = re.compile(rf"(?:\d|\b[A-Z]{{1,2}}|\b[a-z]|\b(?i:{_DIGIT_WORD}))[\s.,-]*$")
_STARTS_WITH_CODE = re.compile(rf"^[\s.,-]*(?:\d|[A-Z]{{1,2}}\b|[a-z]\b|(?i:{_DIGIT_WORD})\b)")


def _chains(utterances: Sequence[Utterance]) -> list[list[int]]:
    """Indexes of the utterances a number may run across, two or more in a chain."""
    chains: list[list[int]] = []
    last: dict[str, list[int]] = {}
    for i in sorted(range(len(utterances)), key=lambda i: utterances[i].start):
        u = utterances[i]
        chain = last.get(u.leg)
        prev = utterances[chain[-1]] if chain else None
        if (
            chain is not None
            and prev is not None
            and u.start - prev.end < ACROSS_GAP_S
            and _ENDS_IN_CODE.search(prev.text)
            and _STARTS_WITH_CODE.match(u.text)
        ):
            chain.append(i)
        else:
            last[u.leg] = chain = [i]
            chains.append(chain)
    return [c for c in chains if len(c) > 1]


def _across(members: Sequence[Utterance]) -> list[list[Found]]:
    """What a number said across utterances of a chain masks in each of them. Windows of
    up to MAX_PIECES utterances are read, so that two numbers said one after the other do
    not run together into one that is neither."""
    out: list[list[Found]] = [[] for _ in members]
    for first in range(len(members)):
        for last in range(first + 1, min(len(members), first + MAX_PIECES)):
            window = members[first : last + 1]
            starts = [sum(len(u.text) + 1 for u in window[:k]) for k in range(len(window))]
            for f in find(" ".join(u.text for u in window), joined=True):
                parts = [
                    (first + k, max(f.start, s) - s, min(f.end, s + len(u.text)) - s)
                    for k, (u, s) in enumerate(zip(window, starts, strict=True))
                    if f.start < s + len(u.text) and f.end > s
                ]
                if len(parts) > 1:
                    for k, a, b in parts:
                        out[k].append(Found(f.kind, a, b))
    return out


def _mask_words(words: Sequence[Word], text: str, found: list[Found]) -> tuple[Word, ...]:
    """Words located in `text` in order; those inside a found stretch merged into its mask."""
    out: list[Word] = []
    pos = 0
    current: Found | None = None
    for w in words:
        token = w.word.strip()
        at = text.find(token, pos) if token else -1
        if at >= 0:
            pos = at + len(token)
        hit = next((f for f in found if at >= 0 and f.start <= at < f.end), None)
        if hit is None:
            out.append(w)
            current = None
        elif hit is current:
            last = out[-1]
            out[-1] = last.model_copy(
                update={"end": w.end, "probability": min(last.probability, w.probability)}
            )
        else:
            out.append(w.model_copy(update={"word": f" [{hit.kind}]"}))
            current = hit
    return tuple(out)


def redact_for(services: Services, utterances: Sequence[Utterance]) -> list[Utterance]:
    """The utterances masked when their tenant's transcripts are redacted (`redaction.*`),
    else unchanged; a leg's consecutive utterances are read together where a number
    may cross from one to the next. Each mask is counted and logged by kind, never with its
    value."""
    settings = services.settings.redaction
    mine = [i for i, u in enumerate(utterances) if settings.applies_to(u.tenant)]
    if not mine:
        return list(utterances)  # the usual case: no tenant's transcripts are redacted
    # what each utterance's own text shows, then its pieces of numbers said across
    # utterances, then numbers masked elsewhere in the call said again
    masks = {i: find(utterances[i].text, partial=not utterances[i].final) for i in mine}
    for chain in _chains([utterances[i] for i in mine]):
        pieces = [utterances[mine[k]] for k in chain]
        for k, across in zip(chain, _across(pieces), strict=True):
            masks[mine[k]] += across
    texts = [utterances[i].text for i in mine]
    for i, again in zip(mine, _said_again(texts, [masks[i] for i in mine]), strict=True):
        masks[i] += again
    out = list(utterances)
    for i in mine:
        u = utterances[i]
        masked, kinds = _with_masks(u, masks[i])
        if u.tentative:
            tentative = find(f"{u.text} {u.tentative}", partial=True)
            masked = masked.model_copy(
                update={"tentative": _masked(u.tentative, _shifted(tentative, len(u.text) + 1))}
            )
        for kind in kinds:
            services.metrics.inc("pii_redacted_total", kind=kind)
        if kinds:
            log.info(
                "redacted %s in %s at %.2f s",
                ",".join(kinds),
                u.leg,
                u.start,
                **ctx(u.tenant, u.call_id),
            )
        out[i] = masked
    return out


# A number as long as one already masked in the call (within SAID_AGAIN_SLACK digits) and
# with SAID_AGAIN of its digits in a row is that number said again: a card said again and
# misheard so that no rule finds it ("quarante-cinq, trente-neuf, quatorze, ..." read
# "49, 14, 80, 8, ...": two digits lost, no checksum) still holds most of it.
SAID_AGAIN = 8
SAID_AGAIN_SLACK = 3


def _said_again(texts: Sequence[str], found: Sequence[Sequence[Found]]) -> list[list[Found]]:
    """In each text, the runs of digits that are what is `found` (masked) in any of the
    texts said again, masked as that kind. The lengths must match: an order number is not
    a card said again for sharing a few digits with an IBAN."""
    masked = [
        (f.kind, reading)
        for text, fs in zip(texts, found, strict=True)
        for f in fs
        for run in _runs(text[f.start : f.end], letters=False)
        for reading in _readings(run)
        if len(reading) >= SAID_AGAIN
    ]
    if not masked:
        return [[] for _ in texts]  # the usual case, and a live partial's every time
    out: list[list[Found]] = []
    for text in texts:
        again: list[Found] = []
        for run in _runs(text, letters=False):
            for reading in _readings(run):
                windows = {
                    reading[k : k + SAID_AGAIN] for k in range(len(reading) - SAID_AGAIN + 1)
                }
                kind = next(
                    (
                        kind
                        for kind, digits in masked
                        if abs(len(reading) - len(digits)) <= SAID_AGAIN_SLACK
                        and any(w in digits for w in windows)
                    ),
                    None,
                )
                if kind is not None:
                    again.append(Found(kind, run.at[0], run.end))
                    break
        out.append(again)
    return out


def _shifted(found: Sequence[Found], by: int) -> list[Found]:
    """Finds in a text that starts `by` characters into the one searched (clipped to it)."""
    return [Found(f.kind, max(0, f.start - by), f.end - by) for f in found if f.end > by]


@dataclass(frozen=True)
class Masked:
    """Where a mask hides something: the audit record of a transcript (never the value)."""

    kind: str
    leg: str
    start: float
    end: float


KINDS = ("CARD", "IBAN", "NIR", "PHONE", "EMAIL", "DOB")
_MASK_ANYWHERE = re.compile(rf"\[({'|'.join(KINDS)})\]")
_MASK_WORD = re.compile(rf"^\s*\[({'|'.join(KINDS)})\]")


def masked_spans(utterances: Sequence[Utterance]) -> list[Masked]:
    """Each mask of the utterances with its leg and time (its word's, else the utterance's);
    a number said across utterances is one span, the pause inside it included."""
    marks: list[tuple[Masked, bool, bool]] = []  # and whether it ends / starts its utterance
    for u in utterances:
        found = [(m.group(1), w) for w in u.words if (m := _MASK_WORD.match(w.word))]
        for kind, w in found:
            first, last = w is u.words[0], w is u.words[-1]
            marks.append((Masked(kind, u.leg, w.start, w.end), first, last))
        if not u.words:
            for m in _MASK_ANYWHERE.finditer(u.text):
                first, last = m.start() == 0, m.end() == len(u.text.rstrip(" .,"))
                marks.append((Masked(m.group(1), u.leg, u.start, u.end), first, last))
    spans: list[Masked] = []
    ends_utterance = False
    for mark, first, last in sorted(marks, key=lambda m: (m[0].leg, m[0].start)):
        prev = spans[-1] if spans else None
        if (
            prev is not None
            and ends_utterance
            and first
            and (prev.leg, prev.kind) == (mark.leg, mark.kind)
            and mark.start - prev.end < ACROSS_GAP_S
        ):
            spans[-1] = Masked(mark.kind, mark.leg, prev.start, max(prev.end, mark.end))
        else:
            spans.append(mark)
        ends_utterance = last
    return sorted(spans, key=lambda m: (m.start, m.leg))


# Key presses further apart than this are not one number (a menu choice, then a card).
PRESS_GAP_S = 2.0


def redact_presses(presses: Sequence[DtmfReceived]) -> tuple[list[DtmfReceived], list[Masked]]:
    """Key presses that spell personal data (a card keyed into an IVR, a phone number)
    dropped from what is stored, and where they were: each leg's presses read in order as
    one number, as spoken digits are, a pause over PRESS_GAP_S ending it."""
    kept: list[DtmfReceived] = []
    masks: list[Masked] = []
    for leg in sorted({p.leg for p in presses}):
        mine = sorted((p for p in presses if p.leg == leg), key=lambda p: p.start)
        text, at = "", []
        for i, p in enumerate(mine):
            if i and p.start - mine[i - 1].start > PRESS_GAP_S:
                text += " |"
            text += " " if text else ""
            at.append(len(text))
            text += p.digit
        hidden: set[int] = set()
        for f in find(text):
            inside = [i for i, pos in enumerate(at) if f.start <= pos < f.end]
            hidden.update(inside)
            first, last = mine[inside[0]], mine[inside[-1]]
            masks.append(Masked(f.kind, leg, first.start, last.start + last.duration))
        kept += [p for i, p in enumerate(mine) if i not in hidden]
    return sorted(kept, key=lambda p: p.start), masks
