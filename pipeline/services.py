"""The services one process shares: settings, bus, store, metrics, keys and lazy models.

Built once by `build_services` (embedded or distributed) and passed down; nothing global.
Packages hang their own long-lived parts (index, IVR sessions, ...) on it with `component`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.bus.base import Bus
from pipeline.config import Settings
from pipeline.metrics import Metrics
from pipeline.topics import Topics
from recordings.store.base import ObjectStore

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from piper import PiperVoice

    from pipeline.auth import KeyStore

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

    @property
    def keys(self) -> KeyStore:
        """API keys of this deployment."""
        from pipeline.auth import KeyStore

        return self.component("keys", lambda: KeyStore(self.settings.data_dir / "keys.sqlite"))

    def whisper_model(self) -> WhisperModel:
        """The one Whisper model of this process (batch and live share it)."""

        def load() -> WhisperModel:
            from models.whisper import load_whisper

            st = self.settings.stt
            return load_whisper(  # type: ignore[no-any-return]
                st.model, self.settings.model_cache, st.compute_type, st.cpu_threads, st.workers
            )

        return self.component("whisper", load)

    def piper_voice(self) -> PiperVoice:
        """The one Piper voice of this process."""

        def load() -> PiperVoice:
            from piper import PiperVoice

            from models.piper import resolve_voice

            return PiperVoice.load(str(resolve_voice(self.settings.tts.voice)))

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


def build_services(settings: Settings) -> Services:
    """Embedded: in-process bus and local store under the data dir. Distributed: Kafka + S3."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.mode == "embedded":
        from pipeline.bus.inproc import InProcessBus
        from recordings.store.local import LocalStore

        bus: Bus = InProcessBus(settings.kafka.partitions)
        store: ObjectStore = LocalStore(settings.data_dir / "objects")
    else:
        from pipeline.bus.kafka import KafkaBus
        from recordings.store.minio import MinioStore

        bus = KafkaBus(settings.kafka)
        store = MinioStore(settings.s3)
    bus.ensure_topics(Topics(settings.topic_prefix).all())
    return Services(
        settings=settings, bus=bus, store=store, metrics=Metrics(settings.metrics_tenant_labels)
    )
