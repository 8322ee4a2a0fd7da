"""The batch worker stage."""

from __future__ import annotations

from pipeline.services import Services
from pipeline.worker import Stage


def stages(services: Services) -> list[Stage]:
    """Workers of the `batch` role."""
    return []
