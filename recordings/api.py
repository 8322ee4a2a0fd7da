"""Recording upload and transcript routes."""

from __future__ import annotations

from fastapi import APIRouter

from pipeline.services import Services


def router(services: Services) -> APIRouter:
    """Routes of the batch path."""
    return APIRouter()
