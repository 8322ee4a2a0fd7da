"""Text preparation: numbers, phones, times, prices, pauses, rejections."""

import pytest

from tts.text import Segment, TextError, prepare, speakable


def test_numbers_phones_times_prices() -> None:
    assert speakable("Press 42") == "Press forty two"
    assert speakable("Call +33 6 12 34 56 78") == (
        "Call plus three three six one two three four five six seven eight"
    )
    assert speakable("0612345678") == "zero six one two three four five six seven eight"
    assert speakable("Open at 10:30") == "Open at ten thirty"
    assert speakable("until 2pm") == "until two p m"
    assert speakable("at 9:05 am") == "at nine oh five a m"
    assert speakable("It costs $12.50") == "It costs twelve dollars and fifty cents"
    assert speakable("only €3") == "only three euros"
    assert speakable("£1") == "one pound"


def test_pauses_both_syntaxes() -> None:
    segs = prepare('Hello [pause 500ms] world <break time="1s"/> bye', 100)
    assert segs == [
        Segment(text="Hello"),
        Segment(pause_ms=500),
        Segment(text="world"),
        Segment(pause_ms=1000),
        Segment(text="bye"),
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 101, "limit"),
        ("a\x00b", "control"),
        ("[pause 500ms]", "nothing to speak"),
        ("<b>hi</b>", "markup"),
        ("a [pause 99s]", "longer"),
    ],
)
def test_rejections(text: str, reason: str) -> None:
    with pytest.raises(TextError, match=reason):
        prepare(text, 100)


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("press * to repeat", "press star to repeat"),
        ("or press #.", "or press pound."),
        ("3.5% off", "three point five percent off"),
        ("the 21st caller", "the twenty first caller"),
        ("the 100th day", "the one hundredth day"),
        ("1,000 calls", "one thousand calls"),
        ("$1,200.99", "one thousand two hundred dollars and ninety nine cents"),
        ("3 €", "three euros"),
        ("-5 degrees", "minus five degrees"),
        ("version 2.0", "version two point zero"),
        ("A-4 paper", "A-four paper"),
        ("Ben & Jerry", "Ben and Jerry"),
    ],
)
def test_symbols_ordinals_decimals(text: str, spoken: str) -> None:
    assert speakable(text) == spoken


@pytest.mark.parametrize("text", ["hello 😀", "你好", "Привет", "a\u200bb"])
def test_unsupported_characters(text: str) -> None:
    with pytest.raises(TextError, match="unsupported character|control"):
        prepare(text, 100)


def test_latin_accents_and_typography_accepted() -> None:
    segs = prepare("Café “Zoë” — it’s open…", 100)
    assert segs == [Segment(text="Café “Zoë” — it’s open…")]
