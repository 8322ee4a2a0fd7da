"""Where the benchmarks keep built corpus sets, so runs hear the same audio.

Kept apart from sim/corpus.py: a set's cache key is a digest of that module's source, so
any edit there builds every set anew (new Piper renditions, new line noise).
"""

from __future__ import annotations

import argparse
from pathlib import Path

CACHE = Path.home() / ".cache" / "callpipe" / "corpus"


def add_cache_option(ap: argparse.ArgumentParser) -> None:
    """A benchmark's `--corpus-cache` (a Path, or None for ''): where built sets are kept,
    so runs hear the same Piper renditions and line noise."""
    ap.add_argument(
        "--corpus-cache",
        type=lambda text: Path(text) if text else None,
        default=CACHE,
        help="where built sets are kept, so runs hear the same Piper renditions ('' = none)",
    )
