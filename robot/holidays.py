"""French public holidays, from the `holidays` package: the eleven national ones, and those a
subdivision adds (Alsace-Moselle's Good Friday and St Stephen's Day, the overseas
departments' abolition of slavery) when a tenant's policy names its subdivision.

Hand-computed holidays (Easter by the Meeus algorithm and a fixed list) knew metropolitan
France only; the package is maintained against each year's law and knows the subdivisions.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

# The subdivisions `holidays.France` knows (checked by a test against the package): named
# here because importing the package loads every country's calendar (~0.1 s), which only
# the guard's first check should pay, not every `callpipe` start.
SUBDIVISIONS: tuple[str, ...] = (
    "57", "6AE", "971", "972", "973", "974", "976", "BL", "MF", "NC", "PF", "PM", "TF", "WF",
    "Zone A", "Zone B", "Zone C",
)  # fmt: skip


@lru_cache(maxsize=256)
def public_holidays(year: int, subdivision: str | None = None) -> dict[date, str]:
    """The public holidays of France (or of one of its `SUBDIVISIONS`) in `year`, by date."""
    import holidays

    days = holidays.France(years=year, subdiv=subdivision, language="en_US")
    return dict(days.items())


def holiday_name(
    day: date, extra: dict[date, str] | None = None, subdivision: str | None = None
) -> str | None:
    """The holiday `day` falls on (a public one or one of `extra`), or None."""
    if extra and day in extra:
        return extra[day]
    return public_holidays(day.year, subdivision).get(day)
