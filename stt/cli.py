"""`callpipe transcribe`."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add `transcribe` (filled in by the batch path)."""
