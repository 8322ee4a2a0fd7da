"""The services one process shares: settings, bus, store, metrics and lazy models.

Built once by the wiring layer (`app.services.build_services`, embedded or distributed) and
passed down; nothing global. Packages hang their own long-lived parts (API keys, index, IVR
sessions, ...) on it with `component`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from models.piper import load_voice
from models.whisper import load_whisper
from pipeline.bus.base import Bus
from pipeline.config import Settings
from pipeline.metrics import Metrics
from pipeline.store import ObjectStore
from pipeline.topics import Topics

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from piper import PiperVoice

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Services:
    """What every stage, route and command of one process is built from."""

    settings: Settings
    bus: Bus
    store: ObjectStore
    metrics: Metrics = field(default_factory=Metrics)
    _components: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def topics(self) -> Topics:
        """Topic names under the configured prefix."""
        return Topics(self.settings.topic_prefix)

    def component(self, name: str, factory: Callable[[], T]) -> T:
        """The process-wide instance of a part, created on first use (thread-safe)."""
        with self._lock:
            if name not in self._components:
                self._components[name] = factory()
            return self._components[name]  # type: ignore[no-any-return]

    def existing(self, name: str) -> Any | None:
        """The part of that name if this process has made it, else None (none is made)."""
        with self._lock:
            return self._components.get(name)

    def whisper_model(self) -> WhisperModel:
        """The one Whisper model of this process (batch and live share it)."""

        def load() -> WhisperModel:
            st = self.settings.stt
            return load_whisper(  # type: ignore[no-any-return]
                st.model, self.settings.model_cache, st.compute_type, st.cpu_threads, st.workers
            )

        return self.component("whisper", load)

    def piper_voice(self) -> PiperVoice:
        """The one Piper voice of this process."""

        def load() -> PiperVoice:
            return load_voice(self.settings.tts.voice)

        return self.component("piper", load)

    def close(self) -> None:
        """Release the bus and any component that has a `close()`."""
        for comp in list(self._components.values()):
            closer = getattr(comp, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:  # closing must go on for the others
                    log.exception("closing %r failed", comp)
        self.bus.close()


# How a command builds the services of its process; the wiring layer passes its own down.
ServicesFactory = Callable[[Settings], Services]
