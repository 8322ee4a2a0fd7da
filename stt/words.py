"""Words back into text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.events import Word

# Whisper's word splitter starts a word without a space only at a token that does not begin
# one: ".8" of "28.8", "-administrator" of "non-administrator", ",000", "'s", "%". Words are
# stored stripped, so such a word is glued back to the one before it.
_GLUED = re.compile(r"^(?:[.,:/\-'’][\w]|[%’']$)")


def join_words(words: Sequence[Word]) -> str:
    """Text of a word list, spaced as Whisper wrote it ("28.8", not "28 .8")."""
    out = ""
    for w in words:
        out += w.word if out and _GLUED.match(w.word) else (" " if out else "") + w.word
    return out
