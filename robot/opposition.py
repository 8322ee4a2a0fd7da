"""BLOCTEL-style opposition files: one number per line, or CSV with the number in a column.

Every number is normalised to E.164 before it is stored, so `06 12 34 56 78`,
`0612345678` and `+33612345678` are one entry. Lines that hold no number (headers,
comments, blanks) are skipped; lines whose number is not one are counted as rejected.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from robot.numbers import NumberError, to_e164


@dataclass
class ParsedList:
    """Numbers read from a file, and the lines that were refused (1-based, with why)."""

    numbers: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _looks_like_number(cell: str) -> bool:
    digits = sum(c.isdigit() for c in cell)
    return digits >= 6 and digits >= len(cell.replace(" ", "")) * 0.6


def parse_opposition(text: str) -> ParsedList:
    """Read a list; CSV when a line holds `;` or `,`, else one number per line."""
    out = ParsedList()
    lines = text.splitlines()
    delimiter = ";" if any(";" in ln for ln in lines[:20]) else ","
    for i, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1):
        cells = [c.strip() for c in row if c.strip()]
        if not cells or cells[0].startswith("#"):
            continue
        candidates = [c for c in cells if _looks_like_number(c)]
        if not candidates:
            if i == 1:  # a header line
                continue
            out.rejected.append((i, f"no telephone number in {','.join(cells)[:60]!r}"))
            continue
        try:
            out.numbers.append(to_e164(candidates[0]))
        except NumberError as exc:
            out.rejected.append((i, str(exc)))
    return out
