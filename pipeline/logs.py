"""Structured logging: every line carries tenant and call_id (or '-')."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s tenant=%(tenant)s call_id=%(call_id)s %(message)s"


class _Defaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for f in ("tenant", "call_id"):
            if not hasattr(record, f):
                setattr(record, f, "-")
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current `sys.stderr`, not the one at set-up: a CLI run in-process
    (tests, embedding) may replace and close the stream while worker threads still log."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str = "INFO") -> None:
    """Install the structured format on the root logger (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(getattr(h, "_callpipe", False) for h in root.handlers):
        handler = _StderrHandler()
        handler._callpipe = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(_Defaults())
        root.addHandler(handler)


class CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to one call: `CallLog(log, tenant, call_id).info(...)`."""

    def __init__(self, logger: logging.Logger, tenant: str | None, call_id: str | None) -> None:
        super().__init__(logger, {"tenant": tenant or "-", "call_id": call_id or "-"})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def ctx(tenant: str | None, call_id: str | None) -> dict[str, Any]:
    """`extra=` for a single structured log call: `log.info("...", **ctx(t, c))`."""
    return {"extra": {"tenant": tenant or "-", "call_id": call_id or "-"}}
