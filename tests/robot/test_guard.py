"""The compliance guard: each rule refuses its case and allows the lawful neighbour."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from functools import partial
from zoneinfo import ZoneInfo

import holidays
import pytest

from pipeline.database import Database
from pipeline.events import RobotRefused
from pipeline.metrics import Metrics
from robot.guard import CallingPolicy, Guard, next_allowed, policy_of
from robot.holidays import SUBDIVISIONS, public_holidays
from robot.numbers import NumberError, to_e164
from robot.opposition import parse_opposition
from robot.store import NAME, SCHEMA, RobotStore

PARIS = ZoneInfo("Europe/Paris")
CALLER = "+33123456789"
CALLEE = "+33611111111"


def paris(y: int, m: int, d: int, hh: int, mm: int) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=PARIS)


# Monday 23 November 2026, an ordinary working day.
MONDAY_11 = paris(2026, 11, 23, 11, 0)


@pytest.fixture
def store(database: Callable[[str, list[str]], Database]) -> Iterator[RobotStore]:
    """The robot store on SQLite and on PostgreSQL (the `database` fixture runs both)."""
    s = RobotStore(database(NAME, SCHEMA))
    yield s
    s.close()


@pytest.fixture
def refused() -> list[RobotRefused]:
    return []


@pytest.fixture
def guard(store: RobotStore, refused: list[RobotRefused]) -> Guard:
    return Guard(store, Metrics(), lambda t: policy_of(store, t), refused.append)


def check(guard: Guard, at: datetime = MONDAY_11, **kw: str) -> tuple[bool, str | None]:
    args = {"tenant": "acme", "callee": CALLEE, "caller_id": CALLER, "sector": "insurance"}
    args.update(kw)
    d = guard.check(args["tenant"], args["callee"], args["caller_id"], args["sector"], at)
    return d.allowed, d.rule


@pytest.mark.parametrize(
    ("hh", "mm", "allowed"),
    [
        (9, 59, False),
        (10, 0, True),
        (12, 59, True),
        (13, 0, False),
        (13, 59, False),
        (14, 0, True),
        (19, 59, True),
        (20, 0, False),
        (23, 0, False),
    ],
)
def test_calling_hours_edges(guard: Guard, hh: int, mm: int, allowed: bool) -> None:
    ok, rule = check(guard, paris(2026, 11, 23, hh, mm))
    assert ok is allowed
    assert rule == (None if allowed else "calling_hours")


def test_hours_read_in_paris_time_whatever_the_zone_given(guard: Guard) -> None:
    # 18:59 UTC in November is 19:59 in Paris (allowed); 19:00 UTC is 20:00 (refused).
    assert check(guard, datetime(2026, 11, 23, 18, 59, tzinfo=UTC)) == (True, None)
    assert check(guard, datetime(2026, 11, 23, 19, 0, tzinfo=UTC)) == (False, "calling_hours")
    # Summer time: 17:59 UTC on 1 July is 19:59 in Paris.
    assert check(guard, datetime(2026, 7, 1, 17, 59, tzinfo=UTC))[0] is True
    assert check(guard, datetime(2026, 7, 1, 18, 0, tzinfo=UTC))[0] is False


def test_weekend_refused_weekday_allowed(guard: Guard) -> None:
    assert check(guard, paris(2026, 11, 21, 11, 0)) == (False, "calling_hours")  # Saturday
    assert check(guard, paris(2026, 11, 22, 11, 0)) == (False, "calling_hours")  # Sunday
    assert check(guard, paris(2026, 11, 20, 11, 0)) == (True, None)  # Friday


def test_the_subdivisions_are_those_of_the_package() -> None:
    assert SUBDIVISIONS == tuple(holidays.France.subdivisions)


def test_national_holidays_and_those_of_a_subdivision() -> None:
    h = public_holidays(2026)
    assert h[date(2026, 4, 6)] == "Easter Monday"  # Easter 2026 is 5 April
    assert h[date(2026, 5, 14)] == "Ascension Day"
    assert h[date(2026, 5, 25)] == "Pentecost Monday"
    assert len(h) == 11
    assert public_holidays(2025)[date(2025, 4, 21)] == "Easter Monday"
    moselle = public_holidays(2026, "57")
    assert moselle[date(2026, 4, 3)] == "Good Friday" and date(2026, 12, 26) in moselle
    assert date(2026, 12, 26) not in h


def test_a_policy_of_alsace_moselle_keeps_its_holidays(store: RobotStore, guard: Guard) -> None:
    day = paris(2026, 12, 26, 11, 0)  # a Saturday: calls allowed on Saturdays here
    store.put_policy("acme", {"weekdays": [0, 1, 2, 3, 4, 5]})
    assert check(guard, day) == (True, None)
    store.put_policy("acme", {"weekdays": [0, 1, 2, 3, 4, 5], "holiday_subdivision": "57"})
    assert check(guard, day) == (False, "public_holiday")
    with pytest.raises(ValueError, match="unknown subdivision"):
        CallingPolicy(holiday_subdivision="75")


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 11, 11),
        date(2026, 4, 6),
        date(2026, 5, 14),
        date(2026, 5, 25),
        date(2026, 7, 14),
        date(2026, 12, 25),
    ],
)
def test_public_holidays_refused(guard: Guard, day: date) -> None:
    ok, rule = check(guard, paris(day.year, day.month, day.day, 11, 0))
    assert (ok, rule) == (False, "public_holiday")


def test_day_after_holiday_allowed(guard: Guard) -> None:
    assert check(guard, paris(2026, 11, 12, 11, 0)) == (True, None)  # after Armistice Day
    assert check(guard, paris(2026, 4, 7, 11, 0)) == (True, None)  # after Easter Monday


def test_fifth_call_in_30_days_refused_across_campaigns(guard: Guard, store: RobotStore) -> None:
    days = [2, 3, 4, 5]  # 2-5 November 2026, weekdays
    for i, d in enumerate(days):
        decision = guard.check(
            "acme",
            CALLEE,
            CALLER,
            "insurance",
            paris(2026, 11, d, 11, 0),
            kind="call",
            place_call_id=f"c{i}",
            campaign_id=f"camp{i % 2}",
        )
        assert decision.allowed, decision.reason  # the 1st to the 4th
    assert check(guard, paris(2026, 11, 23, 11, 0)) == (False, "frequency")  # the 5th
    # Another tenant's calls do not count; another callee is not affected.
    assert check(guard, paris(2026, 11, 23, 11, 0), tenant="other") == (True, None)
    assert check(guard, paris(2026, 11, 23, 11, 0), callee="+33622222222") == (True, None)
    # Rolling window: on 3 December the call of 2 November is more than 30 days old.
    assert check(guard, paris(2026, 12, 3, 11, 0)) == (True, None)
    assert store.count_calls("acme", CALLEE, 0, 2e10) == 4


def test_hosts_racing_never_place_a_fifth_call(
    database: Callable[[str, list[str]], Database],
) -> None:
    """Three guards on three connections to one database (robot workers on three hosts),
    nine threads placing calls to one callee at once: exactly four are placed."""

    class SlowStore(RobotStore):
        # Widens the gap between counting and recording, where an unserialised check
        # lets two hosts both see 3 calls and both place a 4th.
        def count_calls(self, tenant: str, callee: str, since: float, until: float) -> int:
            n = super().count_calls(tenant, callee, since, until)
            time.sleep(0.05)
            return n

    stores = [SlowStore(database(NAME, SCHEMA)) for _ in range(3)]
    guards = [Guard(s, Metrics(), partial(policy_of, s)) for s in stores]
    start = threading.Barrier(9)

    def place(i: int) -> bool:
        start.wait()
        return (
            guards[i % 3]
            .check(
                "acme", CALLEE, CALLER, "insurance", MONDAY_11, kind="call", place_call_id=f"r{i}"
            )
            .allowed
        )

    with ThreadPoolExecutor(9) as pool:
        allowed = list(pool.map(place, range(9)))
    assert allowed.count(True) == 4
    assert stores[1].count_calls("acme", CALLEE, 0, 2e10) == 4


def test_fourth_call_allowed(guard: Guard) -> None:
    for i, d in enumerate([2, 3, 4]):
        assert guard.check(
            "acme", CALLEE, CALLER, "x", paris(2026, 11, d, 11, 0), place_call_id=f"c{i}"
        ).allowed
    assert check(guard) == (True, None)


def test_check_alone_counts_nothing(guard: Guard, store: RobotStore) -> None:
    for _ in range(6):
        assert check(guard) == (True, None)
    assert store.count_calls("acme", CALLEE, 0, 2e10) == 0


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [
        ("+33612345678", False),
        ("0712345678", False),
        ("06 98 76 54 32", False),
        ("+33123456789", True),
        ("0987654321", True),
    ],
)
def test_mobile_caller_id_refused(guard: Guard, caller: str, allowed: bool) -> None:
    ok, rule = check(guard, caller_id=caller)
    assert ok is allowed
    assert rule == (None if allowed else "caller_id")


def test_opposition_list_normalised_and_refreshed(guard: Guard, store: RobotStore) -> None:
    parsed = parse_opposition("numero\n06 12 34 56 78\n+33 7 00 00 00 01\nnot a number 12\n")
    assert parsed.numbers == ["+33612345678", "+33700000001"]
    assert [line for line, _ in parsed.rejected] == [4]
    store.replace_opposition("acme", parsed.numbers, len(parsed.rejected))
    assert check(guard, callee="0612345678") == (False, "opposition")
    assert check(guard, callee="+33612345678") == (False, "opposition")
    assert check(guard, callee="+33612345679") == (True, None)
    # Re-import: the new file replaces the old list.
    store.replace_opposition("acme", parse_opposition("0033612345679;x\n").numbers, 0)
    assert check(guard, callee="06 12 34 56 78") == (True, None)
    assert check(guard, callee="06 12 34 56 79") == (False, "opposition")
    assert check(guard, callee="06 12 34 56 79", tenant="other") == (True, None)


@pytest.mark.parametrize(
    ("sector", "allowed"),
    [
        ("energy renovation", False),
        ("Rénovation énergétique", False),
        ("CPF training", False),
        ("formation CPF", False),
        ("energy_renovation", False),
        ("insurance", True),
        ("energy supply", True),
        ("training", True),
    ],
)
def test_banned_sectors(guard: Guard, sector: str, allowed: bool) -> None:
    ok, rule = check(guard, sector=sector)
    assert ok is allowed
    assert rule == (None if allowed else "sector")


def test_not_numbers_raise(guard: Guard) -> None:
    for bad in ("hello", "06 12 AB 56 78", "", "+33 6 12", "12345"):
        with pytest.raises(NumberError):
            check(guard, callee=bad)
    with pytest.raises(NumberError):
        check(guard, caller_id="anonymous")
    assert to_e164("0033 6 12 34 56 78") == "+33612345678"
    assert to_e164("+33 (0)6 12 34 56 78") == "+33612345678"
    assert to_e164("+44 20 7946 0958") == "+442079460958"


def test_refusals_published_counted_and_audited(
    guard: Guard, store: RobotStore, refused: list[RobotRefused]
) -> None:
    check(guard, paris(2026, 11, 23, 20, 0))
    check(guard, paris(2026, 11, 23, 19, 59))
    assert [r.rule for r in refused] == ["calling_hours"]
    assert refused[0].callee == CALLEE and refused[0].tenant == "acme"
    assert guard.metrics.value("robot_refusals_total", rule="calling_hours") == 1
    audit = store.audit_entries("acme")
    assert [(a["allowed"], a["rule"]) for a in audit] == [(True, None), (False, "calling_hours")]
    assert "20:00" in audit[1]["reason"]


def test_tenant_policy_configurable(guard: Guard, store: RobotStore) -> None:
    store.put_policy(
        "late",
        CallingPolicy(
            windows=["10:00-21:00"], weekdays=[0, 1, 2, 3, 4, 5], public_holidays=False, max_calls=1
        ).model_dump(mode="json"),
    )
    assert check(guard, paris(2026, 11, 23, 20, 30), tenant="late") == (True, None)
    assert check(guard, paris(2026, 11, 21, 11, 0), tenant="late") == (True, None)  # Saturday
    assert check(guard, paris(2026, 11, 11, 11, 0), tenant="late") == (True, None)
    assert check(guard, paris(2026, 11, 23, 20, 30)) == (False, "calling_hours")  # default


def test_next_allowed_skips_lunch_nights_weekends_holidays() -> None:
    p = CallingPolicy()
    assert next_allowed(p, paris(2026, 11, 23, 13, 30)) == paris(2026, 11, 23, 14, 0)
    assert next_allowed(p, paris(2026, 11, 20, 20, 0)) == paris(2026, 11, 23, 10, 0)
    assert next_allowed(p, paris(2026, 11, 10, 20, 0)) == paris(2026, 11, 12, 10, 0)
    assert next_allowed(p, paris(2026, 11, 23, 11, 0)) == paris(2026, 11, 23, 11, 0)


def test_bad_policy_rejected() -> None:
    with pytest.raises(ValueError):
        CallingPolicy(windows=["14:00-10:00"])
    with pytest.raises(ValueError):
        CallingPolicy(timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        CallingPolicy(weekdays=[7])
