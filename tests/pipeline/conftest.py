"""Fixtures for the RTP ingest tests: services with a private UDP port range, a bus tap."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.events import Event, MediaChunk, decode_event, decode_media
from pipeline.ingest.receiver import RtpIngest
from pipeline.ingest.stage import ingest_of
from pipeline.services import Services


@pytest.fixture
def rtp_services(services: Services) -> Services:
    """The embedded services with a random 200-port RTP range (parallel runs do not meet)."""
    base = random.randrange(30000, 59000, 200)
    live = services.settings.live.model_copy(
        update={"rtp_port_min": base, "rtp_port_max": base + 199, "jitter_ms": 60}
    )
    services.settings.live = live
    return services


@pytest.fixture
def ingest(rtp_services: Services) -> Iterator[RtpIngest]:
    """The process's ingest, running (closed with the services)."""
    yield ingest_of(rtp_services)


class Tap:
    """Reads everything the ingest publishes on the media and calls topics."""

    def __init__(self, services: Services) -> None:
        self.topics = services.topics
        self.consumer = services.bus.consumer(
            [self.topics.media, self.topics.calls], f"tap-{uuid.uuid4().hex[:6]}"
        )
        self.media: list[MediaChunk] = []
        self.events: list[Event] = []

    def pump(self, timeout_s: float = 0.1) -> None:
        for m in self.consumer.poll(timeout_s):
            if m.topic == self.topics.media:
                self.media.append(decode_media(m.value))
            else:
                self.events.append(decode_event(m.value))

    def until(self, cond: Callable[[Tap], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond(self):
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting on the bus")
            self.pump()

    def ended(self, call_id: str) -> Any:
        return next(
            (e for e in self.events if e.type == "call.ended" and e.call_id == call_id), None
        )

    def chunks(self, call_id: str, leg: str) -> list[MediaChunk]:
        return [c for c in self.media if c.call_id == call_id and c.leg == leg]


@pytest.fixture
def tap(rtp_services: Services) -> Tap:
    """A fresh reader of the media and calls topics."""
    return Tap(rtp_services)
