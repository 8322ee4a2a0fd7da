"""The evaluation normaliser and WER."""

from __future__ import annotations

from stt.normalise import normalise, number_to_words, wer


def test_case_punctuation_accents() -> None:
    assert normalise("Résiliation, S'IL VOUS PLAÎT!") == "resiliation s'il vous plait"


def test_numbers() -> None:
    assert number_to_words(0) == "zero"
    assert number_to_words(42) == "forty two"
    assert number_to_words(1_234_005) == "one million two hundred thirty four thousand five"
    assert normalise("It costs $12 for 3 items") == "it costs twelve dollars for three items"
    assert normalise("my number is 45678") == "my number is four five six seven eight"
    assert normalise("call 0612") == "call zero six one two"
    assert normalise("1,000 people") == "one thousand people"
    # an amount written with thousands separators is a number, not a code
    assert normalise("a credit of $10,000") == "a credit of ten thousand dollars"
    assert normalise("$1,250.50") == "one thousand two hundred fifty point five zero dollars"
    # a number said digit by digit, however Whisper groups it; a range is not one
    assert wer("my number is four five six seven eight", "my number is 4-5678.") == 0.0
    assert wer("my number is four five six seven eight", "My number is 4567 -8.") == 0.0
    assert wer("my number is four five six seven eight", "My number is 4567 8.") == 0.0
    assert normalise("3 5 days") == "three five days"
    assert normalise("call 555-12-34") == "call five five five one two three four"
    assert normalise("3-5 days") == "three five days"


def test_wer() -> None:
    assert wer("I want to cancel my contract", "i want to cancel my contract.") == 0.0
    assert wer("a b c d", "a x c") == 0.5
    assert wer("", "") == 0.0
    assert wer("", "hello") == 1.0
    assert wer("Mr. Smith paid 42", "mister smith paid forty-two") == 0.0


def test_times_and_contractions_written_either_way() -> None:
    assert wer("Opening hours are 9am to 10:30 pm.", "Opening hours are 9 a.m. to 10.30 p.m.") == 0
    assert wer("I am not sure, I cannot say.", "I'm not sure, I can't say.") == 0.0
    assert wer("It’s fine, we’re here.", "it is fine, we are here") == 0.0
    assert normalise("at 10:00") == "at ten"
    assert normalise("version 2.5.1") == "version two point five one"
    # a wrong time is still an error
    assert wer("at 10:30", "at 10:40") > 0  # "at ten thirty" vs "at ten forty"


def test_one_word_spelled_two_ways_is_not_an_error() -> None:
    assert wer("at the shopping centre", "at the shopping center") == 0.0
    assert wer("Alright, I'm doing it now.", "All right, I am doing it now") == 0.0
    assert normalise("the colour of the theatre") == "the color of the theater"
    # a different word is still an error
    assert wer("at the shopping centre", "at the shopping centres") > 0
