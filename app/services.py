"""Building a process's services: which bus, object store and database the configuration
chooses, and a clear error when one of them does not answer at start."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from pipeline.bus.base import Bus, BusError
from pipeline.bus.inproc import InProcessBus
from pipeline.bus.kafka import KafkaBus
from pipeline.config import Settings
from pipeline.database import DatabaseError, PostgresPool
from pipeline.errors import ServiceUnavailable
from pipeline.metrics import Metrics
from pipeline.services import Services
from pipeline.store import ObjectStore, StoreError
from pipeline.topics import Topics
from recordings.store.local import LocalStore
from recordings.store.minio import MinioStore


def build_services(settings: Settings) -> Services:
    """Embedded: in-process bus and local store under the data dir. Distributed: Kafka + S3.
    Either: PostgreSQL for the relational stores when `database.url` names one (else SQLite
    files under the data dir)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    topics = Topics(settings.topic_prefix).all()
    pool = _postgres(settings) if settings.database.url is not None else None
    if settings.mode == "embedded":
        bus: Bus = InProcessBus(settings.kafka.partitions)
        store: ObjectStore = LocalStore(settings.data_dir / "objects")
        bus.ensure_topics(topics)
    else:
        try:
            bus, store = _distributed(settings, topics)
        except ServiceUnavailable:
            if pool is not None:
                pool.close()
            raise
    services = Services(
        settings=settings, bus=bus, store=store, metrics=Metrics(settings.metrics_tenant_labels)
    )
    if pool is not None:
        services.component("postgres", lambda: pool)
    return services


def _postgres(settings: Settings) -> PostgresPool:
    """The database pool, opened and checked; ServiceUnavailable when it does not answer."""
    url = str(settings.database.url)
    try:
        with _quiet("psycopg.pool"):
            return PostgresPool(url, max_size=settings.database.pool_size)
    except DatabaseError as exc:
        raise ServiceUnavailable(
            "PostgreSQL", _without_password(url), "CALLPIPE_DATABASE__URL", str(exc)
        ) from exc


def _without_password(url: str) -> str:
    """The URL as it may be printed: host, port and database, never the password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path}"


def _distributed(settings: Settings, topics: list[str]) -> tuple[Bus, ObjectStore]:
    """Kafka with every topic, and the S3 bucket; ServiceUnavailable naming the one that
    does not answer."""
    kafka = settings.kafka.bootstrap
    try:
        with _quiet("kafka"):
            bus = KafkaBus(settings.kafka)
            bus.ensure_topics(topics)
    except BusError as exc:
        raise ServiceUnavailable("Kafka", kafka, "CALLPIPE_KAFKA__BOOTSTRAP", _reason(exc)) from exc
    try:
        store = MinioStore(settings.s3)
    except StoreError as exc:
        bus.close()
        raise ServiceUnavailable(
            "S3", settings.s3.endpoint, "CALLPIPE_S3__ENDPOINT", _reason(exc)
        ) from exc
    return bus, store


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """kafka-python logs every failed connection attempt at ERROR while it retries; at start
    the one line of ServiceUnavailable says it all."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _reason(exc: Exception) -> str:
    """The root of a client library's error, short: "[Errno 111] Connection refused"."""
    text = str(exc)
    if "NoBrokersAvailable" in text:
        return "no broker answered"
    errno = re.search(r"\[Errno \d+\][^\"')]*", text)
    return errno.group(0).strip() if errno else text.splitlines()[0][:200]
