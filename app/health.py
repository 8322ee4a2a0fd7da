"""What a process depends on, probed: the health endpoint says which service is down.

Each probe is cheap and bounded (about a second): a TCP connection to a Kafka bootstrap
broker, one object-store lookup, `SELECT 1` on the database pool. A role keeps serving
while one is down (its clients retry with backoff); the endpoint is how an orchestrator
and an operator see why work is waiting.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from pipeline.database import postgres_of
from pipeline.services import Services

PROBE_TIMEOUT_S = 1.0


def _kafka(bootstrap: str) -> None:
    errors: list[str] = []
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
            return
        except OSError as exc:
            errors.append(f"{address.strip()}: {exc.strerror or exc}")
    raise ConnectionError("; ".join(errors))


def probes(services: Services) -> dict[str, Callable[[], None]]:
    """The probes of the services this process's mode uses, by name."""
    settings = services.settings
    out: dict[str, Callable[[], None]] = {}
    if settings.mode == "distributed":

        def s3() -> None:
            services.store.exists("_health/probe")

        out["kafka"] = lambda: _kafka(settings.kafka.bootstrap)
        out["s3"] = s3
    if settings.database.url is not None:

        def database() -> None:
            with postgres_of(services).pool.connection(timeout=PROBE_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")

        out["database"] = database
    return out


def health(services: Services) -> tuple[bool, dict[str, str]]:
    """(all up, each service's state: "ok" or why it is down)."""
    states: dict[str, str] = {}
    for name, probe in probes(services).items():
        try:
            probe()
            states[name] = "ok"
        except Exception as exc:  # whatever a client library raises, the service is down
            lines = str(exc).strip().splitlines()
            states[name] = "down: " + (lines[0] if lines else type(exc).__name__)
    return all(v == "ok" for v in states.values()), states
