"""The languages a call or recording may be declared in: those Whisper knows.

The same codes as faster-whisper's tokenizer (`faster_whisper.tokenizer._LANGUAGE_CODES`,
private there; tests/pipeline/test_languages.py checks the two agree), kept here so that the
API refuses "zz" at the door instead of a worker failing on it later.
"""

from __future__ import annotations

WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha "
    "haw he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms "
    "mt my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk "
    "tl tr tt uk ur uz vi yi yo yue zh".split()
)


def check_language(code: str) -> str:
    """`code` if Whisper knows it, else ValueError saying so."""
    if code not in WHISPER_LANGUAGES:
        raise ValueError(
            f"unknown language {code!r}: use an ISO 639-1 code Whisper knows (en, fr, es, ...)"
        )
    return code
