"""State on disk is its owner's alone: keys, stores, recordings."""

from __future__ import annotations

import stat
from pathlib import Path

from pipeline.auth import keys_of
from pipeline.services import Services


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_and_objects_are_0600(services: Services) -> None:
    keys_of(services).create("acme", "admin")
    data = services.settings.data_dir
    assert mode(data / "keys.sqlite") == 0o600
    services.store.put("acme/2026/01/01/c1/recording.wav", b"RIFF")
    objects = next(p for p in data.rglob("recording.wav"))
    assert mode(objects) == 0o600
    assert mode(data / "objects") == 0o700
