"""Worker roles: what `callpipe worker ROLE` runs, and what `callpipe serve` runs all of.

A role is its consumer-group stages `(services) -> list[Stage]`, where it has one a
background service `(services, stop) -> list[Thread]` (UDP ingest and AudioSocket,
sweeper, recovery), and where it has one an HTTP app of some routers (`api`: the whole
API but call registration and media; `ingest`: call registration beside the ports it hands
out, and the media WebSockets).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import prompter.worker
import recordings.index.worker
import recordings.recovery
import recordings.retention
import robot.worker
import stt.batch_worker
import stt.live_worker
from app.api import API_ROUTERS, CALL_ROUTERS, RouterOf
from pipeline.ingest import stage as ingest
from pipeline.services import Services
from pipeline.webhooks import delivery as webhooks
from pipeline.worker import Stage, WorkerRunner

StagesOf = Callable[[Services], list[Stage]]
BackgroundOf = Callable[[Services, threading.Event], list[threading.Thread]]

STAGES: dict[str, StagesOf] = {
    "batch": stt.batch_worker.stages,
    "live": stt.live_worker.stages,
    "prompter": prompter.worker.stages,
    "ingest": ingest.stages,
    "index": recordings.index.worker.stages,
    "robot": robot.worker.stages,
    "webhooks": webhooks.stages,
}

BACKGROUND: dict[str, BackgroundOf] = {
    "ingest": ingest.background,
    "retention": recordings.retention.background,
    "recovery": recordings.recovery.background,
    "webhooks": webhooks.background,
}


HTTP: dict[str, list[RouterOf]] = {
    "api": API_ROUTERS,
    "ingest": CALL_ROUTERS,
}

# What each role does, for `callpipe worker --help`.
DESCRIPTIONS: dict[str, str] = {
    "api": "HTTP API, live view and hint WebSockets, pages (as many replicas as wanted)",
    "batch": "transcribes uploaded recordings",
    "index": "indexes final utterances for search",
    "ingest": "receives live media: RTP on its ports (POST /v1/calls), the media"
    " WebSockets (/v1/media/twilio, /v1/media/l16) and AudioSocket",
    "live": "live partial and final transcripts of each call leg",
    "prompter": "agent hints from playbooks and the knowledge base",
    "recovery": "re-queues recordings whose transcription was interrupted",
    "retention": "deletes what is past retention (held calls stay)",
    "robot": "voicebot calls and campaigns",
    "webhooks": "posts the tenants' webhooks (transcript ready, call ended, hint), signed,"
    " retried with backoff",
}


def roles() -> list[str]:
    """Every role name, in a stable order."""
    return sorted(set(STAGES) | set(BACKGROUND) | set(HTTP))


def start_role(services: Services, role: str, stop: threading.Event) -> list[threading.Thread]:
    """Start one role's workers and background services in threads."""
    if role not in roles():
        raise ValueError(f"unknown role {role!r}; known: {', '.join(roles())}")
    threads: list[threading.Thread] = []
    if role in BACKGROUND:
        threads.extend(BACKGROUND[role](services, stop))
    if role in STAGES:
        for stage in STAGES[role](services):
            runner = WorkerRunner(
                stage,
                services.bus,
                services.topics,
                services.metrics,
                poll_timeout_s=services.settings.kafka.poll_timeout_ms / 1000,
            )
            threads.append(runner.start(stop))
    return threads
