"""Telephone numbers as the guard compares them: E.164 (`+33612345678`).

French national numbers (`06 12 34 56 78`, `0612345678`), the international prefix
(`0033...`) and E.164 with spaces, dots, dashes or brackets are all accepted; anything
with letters, or of an impossible length, is refused with the reason.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s.\-()/]+")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class NumberError(ValueError):
    """A callee or caller ID that is not a telephone number; the message says why."""


def to_e164(raw: str, default_country: str = "33") -> str:
    """Normalise a number to E.164; national numbers (leading 0) get `default_country`."""
    if not isinstance(raw, str) or not raw.strip():
        raise NumberError("empty number")
    s = _SEPARATORS.sub("", raw.strip())
    if s.startswith("00"):
        s = "+" + s[2:]
    if s.startswith("+"):
        digits = s[1:]
        if not digits.isdigit():
            raise NumberError(f"{raw!r} is not a telephone number (only digits may follow +)")
        if default_country == "33" and digits.startswith("330"):
            digits = "33" + digits[3:]  # +33 (0)6 ...: the trunk zero is not dialled
        s = "+" + digits
    else:
        if not s.isdigit():
            raise NumberError(f"{raw!r} is not a telephone number (letters or symbols)")
        if s.startswith("0"):
            if default_country == "33" and len(s) != 10:
                raise NumberError(f"{raw!r}: a French national number has 10 digits")
            s = "+" + default_country + s[1:]
        elif default_country == "33" and s.startswith("33") and len(s) == 11:
            s = "+" + s
        else:
            raise NumberError(f"{raw!r}: give a national number (0...) or E.164 (+...)")
    if not _E164.match(s):
        raise NumberError(f"{raw!r} is not a valid E.164 number (7 to 15 digits after +)")
    if s.startswith("+33") and len(s) != 12:
        raise NumberError(f"{raw!r}: a French number has 9 digits after +33")
    return s
