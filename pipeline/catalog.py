"""Call manifests: where a call's artifacts live, findable from tenant and call id alone.

Artifact keys hold the call's date (`{tenant}/{yyyy}/{mm}/{dd}/{call_id}/...`), so a route
that only knows the call id reads `{tenant}/calls/{call_id}.json` first. The manifest lives
in the object store so API and workers on different machines agree on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from pipeline.auth import Principal
from pipeline.events import CallDetails, RecordingReady, utcnow
from pipeline.ids import call_prefix, check_id
from pipeline.store import ObjectNotFound, ObjectStore, StoreError

MANIFEST_DIR = "calls"


class CallManifest(CallDetails):
    """What is known of one call and where its objects are."""

    prefix: str
    recording_key: str | None = None
    transcript_key: str | None = None
    channels: dict[str, str] | Literal["mono"] = "mono"
    status: Literal["queued", "running", "live", "transcribed", "failed"] = "queued"
    # The transcription job (GET /v1/jobs/{call_id}): how far it is, when it last moved.
    progress: float | None = None
    updated_at: datetime | None = None
    error: str | None = None
    end_reason: str | None = None  # a live call: hangup, rtp_timeout, restart ...


def manifest_key(tenant: str, call_id: str) -> str:
    """Key of a call's manifest."""
    check_id(tenant, "tenant")
    check_id(call_id, "call_id")
    return f"{tenant}/{MANIFEST_DIR}/{call_id}.json"


def new_manifest(tenant: str, call_id: str, started_at: datetime, **fields: object) -> CallManifest:
    """A manifest whose prefix follows the design's key layout."""
    return CallManifest(
        tenant=tenant,
        call_id=call_id,
        started_at=started_at,
        prefix=call_prefix(tenant, call_id, started_at),
        **fields,  # type: ignore[arg-type]
    )


def recording_manifest(event: RecordingReady, recording_key: str) -> CallManifest:
    """A new manifest for an uploaded recording (status `queued`)."""
    return new_manifest(**event.details(), recording_key=recording_key, channels=event.channels)


def save_manifest(store: ObjectStore, manifest: CallManifest) -> None:
    """Write (or overwrite) a call's manifest, stamped with the time."""
    stamped = manifest.model_copy(update={"updated_at": utcnow()})
    store.put(
        manifest_key(manifest.tenant, manifest.call_id),
        stamped.model_dump_json().encode(),
        "application/json",
    )


def ensure_live_manifest(
    store: ObjectStore, tenant: str, call_id: str, started_at: datetime, **fields: object
) -> CallManifest:
    """The call's manifest, created for a live call (status `live`, channel 0 agent, 1
    customer, `fields` such as agent_id) when it has none yet."""
    m = load_manifest(store, tenant, call_id)
    if m is None:
        m = new_manifest(
            tenant,
            call_id,
            started_at,
            channels={"0": "agent", "1": "customer"},
            status="live",
            **fields,
        )
        save_manifest(store, m)
    return m


def load_manifest(store: ObjectStore, tenant: str, call_id: str) -> CallManifest | None:
    """The manifest of a call of this tenant, or None (unknown, or another tenant's)."""
    try:
        data = store.get(manifest_key(tenant, call_id))
    except (ObjectNotFound, ValueError):
        return None
    try:
        return CallManifest.model_validate_json(data)
    except ValidationError as exc:
        raise StoreError(f"corrupt manifest for call {call_id}: {exc}", retriable=False) from exc


def visible_manifest(store: ObjectStore, p: Principal, call_id: str) -> CallManifest | None:
    """The call's manifest if this key may see the call: one of its tenant's, and for an
    agent key one of the agent's own calls. None otherwise, the same for a call that does not
    exist, another tenant's, or an id that cannot be one (never a hint which)."""
    try:
        m = load_manifest(store, p.tenant, call_id)
    except StoreError:
        return None
    if m is None or (p.role == "agent" and m.agent_id != p.agent_id):
        return None
    return m
