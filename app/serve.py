"""`callpipe serve` (embedded: API + every worker in one process) and `callpipe worker ROLE`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import uvicorn

from app.api import create_app
from app.demo import start_demo
from app.migrate import migrate_all
from app.roles import DESCRIPTIONS, HTTP, roles, start_role
from app.services import build_services
from pipeline.config import Settings
from pipeline.ingest.audiosocket import audiosocket_of
from pipeline.services import Services

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add `serve` and `worker`."""
    p = sub.add_parser("serve", help="run API and all workers in one process (embedded)")
    p.add_argument(
        "--host", default=None, help="address to listen on (CALLPIPE_HOST, default 127.0.0.1)"
    )
    p.add_argument("--port", type=int, default=None, help="HTTP port (CALLPIPE_PORT, default 8080)")
    p.add_argument("--data", type=Path, default=None, help="data dir (default ./data)")
    p.add_argument("--demo", action="store_true", help="play a demo call once started")
    p.set_defaults(func=cmd_serve)

    w = sub.add_parser(
        "worker",
        help="run one role (distributed: Kafka + S3, and PostgreSQL if configured)",
        description="Roles:\n" + "\n".join(f"  {r:<10} {DESCRIPTIONS[r]}" for r in roles()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("role", choices=roles())
    w.add_argument("--host", default=None, help="HTTP address of api and ingest (CALLPIPE_HOST)")
    w.add_argument("--port", type=int, default=None, help="HTTP port of api and ingest")
    w.set_defaults(func=cmd_worker)


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    base = Settings()
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "data", None) is not None:
        values["data_dir"] = args.data
    return base.model_copy(update=values) if values else base


def start_all(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """Every role in this process (embedded mode)."""
    threads: list[threading.Thread] = []
    for role in roles():
        threads.extend(start_role(services, role, stop))
    return threads


def _audiosocket(services: Services) -> str:
    """Where AudioSocket listens, for the start-up line."""
    if not services.settings.audiosocket.enabled:
        return "AudioSocket off"
    listener = audiosocket_of(services)
    return f"AudioSocket on TCP {services.settings.audiosocket.host}:{listener.port}"


def cmd_serve(args: argparse.Namespace) -> int:
    """Embedded mode: in-process bus, local store, every worker, the API."""
    settings = _settings(args, host=args.host, port=args.port)
    settings = settings.model_copy(update={"mode": "embedded"})
    services = build_services(settings)
    migrate_all(settings, services.existing("postgres"))
    stop = threading.Event()
    start_all(services, stop)
    app = create_app(services)
    if args.demo:
        start_demo(services, stop)
    log.info(
        "callpipe serving on http://%s:%d (data in %s); pages: / (analyst), /agent (agent"
        " panel), /docs (API); media: RTP on UDP %d-%d, WebSocket /v1/media/twilio and"
        " /v1/media/l16, %s",
        settings.host,
        settings.port,
        settings.data_dir.resolve(),
        settings.live.rtp_port_min,
        settings.live.rtp_port_max,
        _audiosocket(services),
    )
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        stop.set()
        services.close()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Distributed mode: one role on Kafka + S3 (+ PostgreSQL) until SIGTERM/SIGINT."""
    settings = _settings(args, host=args.host, port=args.port)
    settings = settings.model_copy(update={"mode": "distributed"})
    services = build_services(settings)
    migrate_all(settings, services.existing("postgres"))
    stop = threading.Event()
    threads = start_role(services, args.role, stop)
    try:
        if args.role == "ingest":
            log.info(
                "ingest media: RTP on UDP %d-%d, %s",
                settings.live.rtp_port_min,
                settings.live.rtp_port_max,
                _audiosocket(services),
            )
        if args.role in HTTP:
            log.info("worker %s serving on http://%s:%d", args.role, settings.host, settings.port)
            app = create_app(services, HTTP[args.role])
            uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
        else:
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            log.info("worker %s running (%d threads)", args.role, len(threads))
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        services.close()
    return 0
