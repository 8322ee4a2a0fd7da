"""Object keys: `{tenant}/{yyyy}/{mm}/{dd}/{call_id}/{name}` so a prefix is a tenant or a day."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Rendered prompts (TTS and IVR), outside every tenant: a tenant id cannot start with "_".
PROMPT_CACHE_PREFIX = "_tts/"


def check_id(value: str, what: str) -> str:
    """Tenants and call ids become path parts: refuse anything that could escape them."""
    if not _SAFE.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} must be 1-128 of letters, digits, '.', '_', '-'")
    return value


def call_prefix(tenant: str, call_id: str, started_at: datetime) -> str:
    """The folder of one call's artifacts."""
    check_id(tenant, "tenant")
    check_id(call_id, "call_id")
    day = started_at.astimezone(UTC)
    return f"{tenant}/{day:%Y/%m/%d}/{call_id}/"


def call_key(tenant: str, call_id: str, started_at: datetime, name: str) -> str:
    """Key of one artifact of a call (`recording.wav`, `transcript.json`, ...)."""
    return call_prefix(tenant, call_id, started_at) + name


def parse_key(key: str) -> tuple[str, datetime, str, str] | None:
    """(tenant, day, call_id, name) of a call key, or None for other keys."""
    parts = key.split("/", 5)
    if len(parts) != 6:
        return None
    tenant, y, m, d, call_id, name = parts
    try:
        day = datetime(int(y), int(m), int(d), tzinfo=UTC)
    except ValueError:
        return None
    return tenant, day, call_id, name
