"""Telephone numbers as the guard compares them: E.164 (`+33612345678`), through
`phonenumbers` (Google's libphonenumber metadata: every country's prefixes and lengths).

French national numbers (`06 12 34 56 78`, `0612345678`), the international prefix
(`0033...`), `+33 (0)6...` and E.164 with spaces, dots, dashes or brackets are all
accepted; anything with letters, or of a length its country does not have, is refused
with the reason. Numbers are checked for a possible length, not for an allocated range:
ranges are opened every year, and a campaign must not lose a real number the metadata
does not know yet.
"""

from __future__ import annotations

import re

import phonenumbers

_LETTERS = re.compile(r"[A-Za-z]")


class NumberError(ValueError):
    """A callee or caller ID that is not a telephone number; the message says why."""


def to_e164(raw: str, region: str = "FR") -> str:
    """Normalise a number to E.164; national numbers are read as `region`'s."""
    if not isinstance(raw, str) or not raw.strip():
        raise NumberError("empty number")
    if _LETTERS.search(raw):  # phonenumbers would read letters as a keypad's digits
        raise NumberError(f"{raw!r} is not a telephone number (letters)")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise NumberError(f"{raw!r} is not a telephone number ({exc})") from None
    if not phonenumbers.is_possible_number(number):
        raise NumberError(f"{raw!r} does not have the length of a number of its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
