"""Text preparation for the English Piper voice: numbers, phones, times, prices, pauses."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from stt.normalise import number_to_words

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_PAUSE = re.compile(
    r"\[pause\s+(\d+)\s*(ms|s)\]|<break\s+time=\"(\d+)\s*(ms|s)\"\s*/>", re.IGNORECASE
)
# A phone number: optional +, then 9+ digits possibly split by spaces, dots or dashes.
_PHONE = re.compile(r"(?<![\w.])\+?\d(?:[ .-]?\d){8,}(?![\w.])")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\s*([ap]\.?m\.?)?(?=\W|$)", re.IGNORECASE)
_HOUR = re.compile(r"\b(\d{1,2})\s*([ap])\.?m\.?(?=\W|$)", re.IGNORECASE)
# An amount: 1,200 or 1200, optionally with decimals.
_AMOUNT = r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?![\d,.]*\d)"
_PRICE = re.compile(r"([$€£])\s?" + _AMOUNT)
_PRICE_AFTER = re.compile(r"(?<![\w.,])" + _AMOUNT + r"\s?([€£$])")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?:(?<!\w)(-))?(?<!\d)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_CURRENCY = {"$": ("dollar", "cent"), "€": ("euro", "cent"), "£": ("pound", "penny")}
# Keys and symbols as a US phone menu says them ("press star", "press pound").
_SYMBOLS = {
    "*": " star ",
    "#": " pound ",
    "&": " and ",
    "@": " at ",
    "%": " percent ",
    "+": " plus ",
    "=": " equals ",
    "$": " dollars ",
    "€": " euros ",
    "£": " pounds ",
}
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
# Beyond ASCII the voice reads Latin letters and punctuation; these symbols are spoken above.
_EXTRA_SYMBOLS = set("€£°")
MAX_PAUSE_MS = 10_000


class TextError(ValueError):
    """Text that cannot be spoken; the message is the reason."""


@dataclass(frozen=True)
class Segment:
    """A piece of a prompt: words to speak, or a silence of `pause_ms`."""

    text: str = ""
    pause_ms: int = 0


def check(text: str, max_chars: int) -> None:
    """Raise TextError for empty, too long, control-character or unsupported text."""
    if not text or not text.strip():
        raise TextError("text is empty")
    if len(text) > max_chars:
        raise TextError(f"text is {len(text)} characters, the limit is {max_chars}")
    for i, ch in enumerate(unicodedata.normalize("NFC", text)):
        if (ord(ch) < 32 and ch not in "\n\t\r") or 0x7F <= ord(ch) < 0xA0:
            raise TextError(f"control character U+{ord(ch):04X} at position {i}")
        if not _supported(ch):
            raise TextError(
                f"unsupported character {ch!r} (U+{ord(ch):04X}) at position {i}: "
                "the English voice reads Latin letters, digits and punctuation"
            )


def _supported(ch: str) -> bool:
    if ch.isascii() or ch in _EXTRA_SYMBOLS:
        return True
    cat = unicodedata.category(ch)
    if cat.startswith("L"):
        return "LATIN" in unicodedata.name(ch, "")
    # Typographic quotes, dashes, ellipsis, no-break spaces.
    return cat.startswith("P") or cat == "Zs"


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"one {word}"
    return f"{number_to_words(n)} {'pence' if word == 'penny' else word + 's'}"


def _amount(whole: str) -> int:
    return int(whole.replace(",", ""))


def _price(major_minor: tuple[str, str], whole: str, cents: str | None) -> str:
    major, minor = major_minor
    spoken = _plural(_amount(whole), major)
    if cents and int(cents.ljust(2, "0")):
        spoken += f" and {_plural(int(cents.ljust(2, '0')), minor)}"
    return spoken


def _ordinal(n: int) -> str:
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _number(m: re.Match[str]) -> str:
    sign, whole, frac = m.group(1), m.group(2), m.group(3)
    words = number_to_words(_amount(whole))
    if frac:
        words += " point " + " ".join(_DIGITS[int(d)] for d in frac)
    return ("minus " if sign else "") + words


def _time(hour: int, minute: int, suffix: str | None) -> str:
    words = number_to_words(hour)
    if minute:
        words += (" oh " if minute < 10 else " ") + number_to_words(minute)
    elif not suffix:
        words += " o'clock"
    if suffix:
        words += " " + " ".join(suffix.replace(".", "").lower())
    return words


def _phone(m: re.Match[str]) -> str:
    digits = [_DIGITS[int(c)] for c in m.group(0) if c.isdigit()]
    return ("plus " if m.group(0).startswith("+") else "") + " ".join(digits)


def speakable(text: str) -> str:
    """Rewrite digits and symbols into words the voice reads naturally."""
    text = unicodedata.normalize("NFC", text)
    text = _PHONE.sub(_phone, text)
    text = _PRICE.sub(lambda m: _price(_CURRENCY[m[1]], m[2], m[3]), text)
    text = _PRICE_AFTER.sub(lambda m: _price(_CURRENCY[m[3]], m[1], m[2]), text)
    text = _TIME.sub(lambda m: _time(int(m[1]), int(m[2]), m[3]), text)
    text = _HOUR.sub(lambda m: _time(int(m[1]), 0, m[2] + "m"), text)
    text = _PERCENT.sub(lambda m: m[1] + " percent", text)
    text = _ORDINAL.sub(lambda m: _ordinal(int(m[1])), text)
    text = _NUMBER.sub(_number, text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = text.replace("°", " degrees ")
    # Symbol words leave spaces before punctuation ("press star .").
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def prepare(text: str, max_chars: int) -> list[Segment]:
    """Check `text` and split it into spoken segments and pauses, in order."""
    check(text, max_chars)
    segments: list[Segment] = []
    pos = 0
    for m in _PAUSE.finditer(text):
        _add_text(segments, text[pos : m.start()])
        value, unit = (m[1], m[2]) if m[1] else (m[3], m[4])
        ms = int(value) * (1000 if unit.lower() == "s" else 1)
        if ms > MAX_PAUSE_MS:
            raise TextError(f"pause of {ms} ms is longer than {MAX_PAUSE_MS} ms")
        segments.append(Segment(pause_ms=ms))
        pos = m.end()
    _add_text(segments, text[pos:])
    if not any(s.text for s in segments):
        raise TextError("text has nothing to speak")
    return segments


def _add_text(segments: list[Segment], raw: str) -> None:
    if re.search(r"<[^>]*>", raw):
        raise TextError('unsupported markup: only <break time="..."/> is understood')
    spoken = speakable(raw)
    if spoken:
        segments.append(Segment(text=spoken))


def cache_text(segments: list[Segment]) -> str:
    """A canonical string of prepared segments (what the cache key hashes)."""
    return "|".join(s.text if s.text else f"[{s.pause_ms}]" for s in segments)
