"""Worker roles: what `callpipe worker ROLE` runs, and what `callpipe serve` runs all of.

A role names a function `(services) -> list[Stage]` (consumer-group workers) and, where
it has one, a background service `(services, stop) -> list[Thread]` (UDP ingest, sweeper).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from pipeline.services import Services
from pipeline.worker import Stage, WorkerRunner

STAGES: dict[str, str] = {
    "batch": "stt.batch_worker:stages",
    "live": "stt.live_worker:stages",
    "prompter": "prompter.worker:stages",
    "ingest": "pipeline.ingest.stage:stages",
    "index": "recordings.index.worker:stages",
    "robot": "robot.worker:stages",
}

BACKGROUND: dict[str, str] = {
    "ingest": "pipeline.ingest.stage:background",
    "retention": "recordings.retention:background",
    "recovery": "recordings.recovery:background",
}


def _load(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


def roles() -> list[str]:
    """Every role name, in a stable order."""
    return sorted(set(STAGES) | set(BACKGROUND))


def start_role(services: Services, role: str, stop: threading.Event) -> list[threading.Thread]:
    """Start one role's workers and background services in threads."""
    if role not in STAGES and role not in BACKGROUND:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(roles())}")
    threads: list[threading.Thread] = []
    if role in BACKGROUND:
        threads.extend(_load(BACKGROUND[role])(services, stop))
    if role in STAGES:
        stages: list[Stage] = _load(STAGES[role])(services)
        for stage in stages:
            runner = WorkerRunner(
                stage,
                services.bus,
                services.topics,
                services.metrics,
                poll_timeout_s=services.settings.kafka.poll_timeout_ms / 1000,
            )
            threads.append(runner.start(stop))
    return threads
