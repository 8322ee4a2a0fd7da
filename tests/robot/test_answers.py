"""Answer understanding in English and French, on finals and (cautiously) on partials."""

from __future__ import annotations

from datetime import date

import pytest

from robot.answers import dtmf_answer, find_date, find_number, match_intent, understand, yes_no
from robot.scenario import Intent, Step

TODAY = date(2026, 11, 23)  # a Monday


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Yes.", "yes"),
        ("Yeah, sure.", "yes"),
        ("Of course!", "yes"),
        ("no problem", "yes"),
        ("Oui, bien sûr.", "yes"),
        ("D'accord.", "yes"),
        ("tout à fait", "yes"),
        ("No.", "no"),
        ("Nope.", "no"),
        ("No, thanks.", "no"),
        ("Certainly not.", "no"),
        ("I can't.", "no"),
        ("Non, pas du tout.", "no"),
        ("Jamais.", "no"),
        ("I'm not sure.", None),
        ("Maybe.", None),
        ("Je ne sais pas.", None),
        ("Yes... no.", None),
        ("The weather is nice.", None),
        ("", None),
    ],
)
def test_yes_no(text: str, want: str | None) -> None:
    assert yes_no(text) == want


def test_yes_no_partials_only_when_opening() -> None:
    assert yes_no("Yes", partial=True) == "yes"
    assert yes_no("Non", partial=True) == "no"
    assert yes_no("Well I think that", partial=True) is None
    assert yes_no("I can", partial=True) is None  # may become "I can't"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("forty two", 42),
        ("Forty-two.", 42),
        ("42", 42),
        ("It's 42 euros", 42),
        ("quarante-deux", 42),
        ("soixante et onze", 71),
        ("quatre-vingts", 80),
        ("quatre-vingt-dix-sept", 97),
        ("one hundred and five", 105),
        ("a hundred", 100),
        ("two thousand three hundred", 2300),
        ("mille deux cents", 1200),
        ("zero", 0),
        ("four five six seven eight", 45678),
        ("3.5", 3.5),
        ("no idea", None),
    ],
)
def test_numbers(text: str, want: float | None) -> None:
    got = find_number(text)
    assert (got[0] if got else None) == want


def test_numbers_on_partials_wait_for_the_next_word() -> None:
    assert find_number("forty", partial=True) is None  # may become forty two
    assert find_number("forty two", partial=True) is None
    assert find_number("forty two people", partial=True) == (42.0, "forty two")


@pytest.mark.parametrize(
    ("text", "lang", "want"),
    [
        ("today", "en", date(2026, 11, 23)),
        ("Tomorrow.", "en", date(2026, 11, 24)),
        ("the day after tomorrow", "en", date(2026, 11, 25)),
        ("next Monday", "en", date(2026, 11, 30)),
        ("on Friday", "en", date(2026, 11, 27)),
        ("March 3rd", "en", date(2027, 3, 3)),
        ("the third of March", "en", date(2027, 3, 3)),
        ("December 1st", "en", date(2026, 12, 1)),
        ("in three days", "en", date(2026, 11, 26)),
        ("demain", "fr", date(2026, 11, 24)),
        ("après-demain", "fr", date(2026, 11, 25)),
        ("lundi prochain", "fr", date(2026, 11, 30)),
        ("le 3 mars", "fr", date(2027, 3, 3)),
        ("le premier décembre", "fr", date(2026, 12, 1)),
        ("2027-01-15", "en", date(2027, 1, 15)),
        ("04/03", "fr", date(2027, 3, 4)),
        ("04/03", "en", date(2027, 4, 3)),
        ("I may", "en", None),
        ("whenever", "en", None),
    ],
)
def test_dates(text: str, lang: str, want: date | None) -> None:
    got = find_date(text, TODAY, lang)
    assert (got[0] if got else None) == want


INTENTS = {
    "billing": Intent(
        keywords=["bill", "invoice", "facture"],
        examples=["I was charged too much", "my payment is wrong"],
    ),
    "outage": Intent(
        keywords=["power cut", "blackout", "coupure"], examples=["I have no electricity at home"]
    ),
}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("It's about my bill.", "billing"),
        ("My invoices are wrong", "billing"),
        ("There's a power cut in my street", "outage"),
        ("une coupure de courant", "outage"),
        ("I think I was charged too much", "billing"),
        ("there is no electricity at home", "outage"),
        ("My bill and the power cut", None),
        ("I want to talk about football", None),
    ],
)
def test_intents(text: str, want: str | None) -> None:
    assert match_intent(text, INTENTS) == want


def test_intent_on_partial_needs_a_keyword() -> None:
    assert match_intent("about my bill", INTENTS, partial=True) == "billing"
    assert match_intent("I was charged too", INTENTS, partial=True) is None


def test_understand_applies_bounds_pattern_and_dtmf() -> None:
    number = Step(id="n", ask="How many?", expect="number", min=1, max=10)
    answer = understand(number, "seven", TODAY)
    assert answer is not None and answer.value == 7
    assert understand(number, "forty", TODAY) is None
    code = Step(id="c", ask="Postcode?", pattern=r"\b\d{5}\b")
    assert (
        answer := understand(code, "It is 75011 Paris", TODAY)
    ) is not None and answer.value == "75011"
    assert understand(code, "in Paris", TODAY) is None
    assert understand(code, "75011 Paris", TODAY, partial=True) is None
    yn = Step(id="y", ask="Ok?", expect="yes_no", dtmf={"1": "yes", "2": "no"})
    answer = dtmf_answer(yn, "2")
    assert answer is not None and answer.value == "no"
    assert dtmf_answer(yn, "5") is None
    answer = dtmf_answer(number, "7#")
    assert answer is not None and answer.value == 7
    assert dtmf_answer(number, "42#") is None  # above max
