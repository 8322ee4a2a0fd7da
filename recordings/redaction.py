"""Personal data out of transcripts before anything is stored, indexed or shown: payment
card numbers (Luhn), IBANs (ISO 13616 mod 97), French social security numbers (NIR, with
its key), phone numbers (the `phonenumbers` library, French and North American), e-mail
addresses (also spoken: "at", "arobase", "dot", "point"), and a date of birth after its cue
words, in French and English. Each is replaced by a typed mask ([CARD], [IBAN], [NIR],
[PHONE], [EMAIL], [DOB]); a word of the utterance inside a mask is replaced by it, with
the masked words' times.

Numbers are read across the words they were said in: Whisper writes a card said digit by
digit as "4 1 1 1 ...", in groups as "4111 1111 ...", or with dashes; digit words (en, fr)
count as digits. A run of digits is masked only when its checksum holds (cards, IBANs,
NIRs), when it follows a card's cue words (a misheard card), or when it is a valid phone
number: prices, dates and order numbers stay."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from pipeline.events import Utterance, Word
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


def _digit_runs(text: str) -> list[tuple[str, int, int]]:
    """Runs of digits across words (digits, digit words, separators between them):
    (digits, start, end) in `text`."""
    runs: list[tuple[str, int, int]] = []
    digits, start, end = "", -1, -1
    for m in re.finditer(r"\d+|[A-Za-zÀ-ÿ]+|[^\sA-Za-zÀ-ÿ\d]", text):
        tok = m.group()
        value = tok if tok.isdigit() else DIGIT_WORDS.get(tok.lower())
        if value is not None:
            if not digits:
                start = m.start()
            digits += value
            end = m.end()
        elif tok in "-.,/" and digits:
            continue  # a separator inside a number said in groups
        else:
            if digits:
                runs.append((digits, start, end))
            digits = ""
    if digits:
        runs.append((digits, start, end))
    return runs


def find(text: str) -> list[Found]:
    """The personal data in `text`, left to right, not overlapping."""
    found: list[Found] = []
    for m in re.finditer(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{1,4}){3,9}", text, re.I):
        # The country fixes the length: the IBAN is the prefix of the match that long.
        want = IBAN_LENGTHS.get(m.group()[:2].upper())
        chars = 0
        for i, c in enumerate(m.group()):
            chars += c != " "
            if chars == want:
                if iban_ok(m.group()[: i + 1].replace(" ", "")):
                    found.append(Found("IBAN", m.start(), m.start() + i + 1))
                break
    for digits, s, e in _digit_runs(text):
        card_said = _CARD_CUES.search(text, max(0, s - CUE_REACH), s) is not None
        if 13 <= len(digits) <= 19 and (luhn(digits) or card_said):
            found.append(Found("CARD", s, e))
        elif nir_ok(digits):
            found.append(Found("NIR", s, e))
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
    out: list[Found] = []
    for f in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if out and f.start < out[-1].end:
            continue  # inside one found already (a card is also a phone-like number)
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


def redact_utterance(u: Utterance) -> tuple[Utterance, list[str]]:
    """The utterance with its text and words masked (a masked stretch of words becomes one
    word, the mask, spanning their times); the kinds masked."""
    found = find(u.text)
    if not found:
        return u, []
    words = _mask_words(u.words, u.text, found)
    masked = u.model_copy(update={"text": _masked(u.text, found), "words": words})
    return masked, [f.kind for f in found]


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
    else unchanged. Each mask is counted and logged by kind, never with its value."""
    out = []
    for u in utterances:
        if not services.settings.redaction.applies_to(u.tenant):
            out.append(u)
            continue
        masked, kinds = redact_utterance(u)
        if u.tentative:
            masked = masked.model_copy(update={"tentative": redact_text(u.tentative)[0]})
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
        out.append(masked)
    return out
