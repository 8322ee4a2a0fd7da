"""Role `ingest`: the UDP loop (background) and a stage taking call.started/ended off the bus.

Choice for calls announced on the bus: ports are handed back only over HTTP. A
`call.started` from the bus for a call this ingest does not know registers it with ports
allocated and logged, and nothing extra is published: a PBX that needs the ports uses
POST /v1/calls. A
`call.ended` from the bus ends a known call without publishing a second call.ended.
Replays are ignored: a call.started older than the RTP timeout, or for a call this
process already ended, registers nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from pipeline.events import CallEnded, CallStarted, Event, MediaChunk
from pipeline.ingest.audiosocket import audiosocket_of
from pipeline.ingest.receiver import CallExists, NoFreePort, RtpIngest, ingest_of, started_at_ok
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.worker import BadInput, Output, Stage

log = logging.getLogger(__name__)


class IngestStage(Stage):
    """Registers and ends calls announced on the `calls` topic."""

    name = "ingest"
    topics = ("calls",)

    def __init__(self, services: Services) -> None:
        self.services = services
        self.ingest = ingest_of(services)

    def process(self, event: Event | MediaChunk) -> Iterable[Output]:
        """call.started: register unknown calls; call.ended: end known ones."""
        if isinstance(event, CallStarted):
            self._started(event)
        elif isinstance(event, CallEnded):
            if (
                self.ingest.end(event.tenant, event.call_id, event.reason, publish=False)
                is not None
            ):
                log.info("call ended from the bus", **ctx(event.tenant, event.call_id))
        return ()

    def _started(self, ev: CallStarted) -> None:
        ingest = self.ingest
        if ingest.call(ev.tenant, ev.call_id) is not None or ingest.recently_ended(
            ev.tenant, ev.call_id
        ):
            return
        metrics = self.services.metrics
        if not ev.legs:
            metrics.inc("calls_rejected_total", cause="no_legs")
            raise BadInput("call.started without legs: nothing to receive")
        if not started_at_ok(ev.started_at, self.services.settings.live.rtp_timeout_s):
            metrics.inc("calls_rejected_total", cause="stale")
            log.info("stale call.started ignored", **ctx(ev.tenant, ev.call_id))
            return
        try:
            ingest.register(ev, via="bus", publish=False)
        except CallExists:
            return
        except NoFreePort as exc:
            metrics.inc("calls_rejected_total", cause="no_port")
            raise BadInput(str(exc)) from exc
        except ValueError as exc:
            metrics.inc("calls_rejected_total", cause="codec")
            raise BadInput(str(exc)) from exc


def stages(services: Services) -> list[Stage]:
    """The bus side of role `ingest`."""
    return [IngestStage(services)]


def background(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """The socket side of role `ingest`: the UDP selector loop and, unless switched off,
    the AudioSocket listener; both stopped with `stop`."""
    ingest = services.component(
        "ingest", lambda: RtpIngest(services.settings, services.bus, services.metrics)
    )
    threads = [ingest.start(stop)]
    listener = None
    if services.settings.audiosocket.enabled:
        listener = audiosocket_of(services)
        threads.append(listener.start())

    def _watch() -> None:
        stop.wait()
        if listener is not None:
            listener.stop()
        ingest.stop()

    watcher = threading.Thread(target=_watch, name="rtp-ingest-stop", daemon=True)
    watcher.start()
    return threads
