"""Building a process's services: which bus and object store the configured mode uses."""

from __future__ import annotations

from pipeline.bus.base import Bus
from pipeline.bus.inproc import InProcessBus
from pipeline.bus.kafka import KafkaBus
from pipeline.config import Settings
from pipeline.metrics import Metrics
from pipeline.services import Services
from pipeline.store import ObjectStore
from pipeline.topics import Topics
from recordings.store.local import LocalStore
from recordings.store.minio import MinioStore


def build_services(settings: Settings) -> Services:
    """Embedded: in-process bus and local store under the data dir. Distributed: Kafka + S3."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.mode == "embedded":
        bus: Bus = InProcessBus(settings.kafka.partitions)
        store: ObjectStore = LocalStore(settings.data_dir / "objects")
    else:
        bus = KafkaBus(settings.kafka)
        store = MinioStore(settings.s3)
    bus.ensure_topics(Topics(settings.topic_prefix).all())
    return Services(
        settings=settings, bus=bus, store=store, metrics=Metrics(settings.metrics_tenant_labels)
    )
