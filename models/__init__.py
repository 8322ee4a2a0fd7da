"""Finding, checking and loading model weights (Whisper, Piper voices); never downloading."""

from models.errors import WeightsNotFound

__all__ = ["WeightsNotFound"]
