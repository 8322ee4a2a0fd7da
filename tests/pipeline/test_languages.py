"""The API's language list is Whisper's."""

from __future__ import annotations

import pytest
from faster_whisper.tokenizer import _LANGUAGE_CODES

from pipeline.languages import WHISPER_LANGUAGES, check_language


def test_the_list_is_faster_whispers() -> None:
    assert set(_LANGUAGE_CODES) == WHISPER_LANGUAGES


def test_unknown_codes_are_refused_with_the_reason() -> None:
    assert check_language("fr") == "fr"
    with pytest.raises(ValueError, match="unknown language 'zz'"):
        check_language("zz")
