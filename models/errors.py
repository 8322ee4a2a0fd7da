"""Errors of weight resolution."""


class WeightsNotFound(FileNotFoundError):
    """Weights that cannot be found locally; the message names what is missing and how to get it."""
