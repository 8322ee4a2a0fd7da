"""Retention: what outlives its tenant's retention is deleted, objects and index rows alike.

- `sweep` deletes expired call objects from the store and expired calls from the index,
  per tenant (`settings.retention_days(tenant)`), skipping calls under legal hold.
  A call's age is its start time when the index knows it; otherwise the day in its keys
  (`{tenant}/{yyyy}/{mm}/{dd}/{call_id}/...`), counted from the end of that day so
  nothing is deleted before its time.
- Legal holds are marker objects `{tenant}/holds/{call_id}.json` (shared by every
  process that sees the store) mirrored as a flag on the index row.
- On S3 the bucket lifecycle rule is set (and read back) at start-up by `apply_lifecycle`.
- `background` is the `retention` role: lifecycle at start, then a sweep every
  `settings.retention.sweep_interval_s`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.catalog import MANIFEST_DIR, load_manifest, manifest_key
from pipeline.ids import PROMPT_CACHE_PREFIX, check_id, parse_key
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.store import ObjectInfo, ObjectStore
from recordings.index import index_of
from recordings.index.base import CallMeta, CallRow, TranscriptIndex

log = logging.getLogger(__name__)

HOLDS_DIR = "holds"
_DAY = timedelta(days=1)


class CallHeld(Exception):
    """The call is under legal hold and may not be deleted."""


@dataclass
class SweepReport:
    """What one sweep removed and kept."""

    objects_deleted: int = 0
    calls_deleted: int = 0
    utterances_deleted: int = 0
    held_kept: int = 0
    prompts_deleted: int = 0  # rendered prompts (the TTS cache) older than retention.days
    tenants: list[str] = field(default_factory=list)
    seconds: float = 0.0


def hold_key(tenant: str, call_id: str) -> str:
    """Key of a call's legal-hold marker."""
    check_id(tenant, "tenant")
    check_id(call_id, "call_id")
    return f"{tenant}/{HOLDS_DIR}/{call_id}.json"


def held_call_ids(store: ObjectStore, index: TranscriptIndex, tenant: str) -> set[str]:
    """Calls of a tenant under hold: markers in the store and flags in the index."""
    held = set(index.held_calls(tenant))
    prefix = f"{tenant}/{HOLDS_DIR}/"
    for info in store.list(prefix):
        name = info.key[len(prefix) :]
        if name.endswith(".json") and "/" not in name:
            held.add(name[: -len(".json")])
    return held


def _known_call(services: Services, tenant: str, call_id: str) -> CallRow | None:
    """The index row of a call, created from its manifest when only the store knows it."""
    index = index_of(services)
    row = index.get_call(tenant, call_id)
    if row is not None:
        return row
    manifest = load_manifest(services.store, tenant, call_id)
    if manifest is None:
        return None
    index.upsert_call(
        CallMeta.of(manifest, prefix=manifest.prefix, recording_key=manifest.recording_key)
    )
    return index.get_call(tenant, call_id)


def set_hold(services: Services, tenant: str, call_id: str, held: bool, by: str | None) -> bool:
    """Place or lift a legal hold; False when the tenant has no such call."""
    if _known_call(services, tenant, call_id) is None:
        return False
    key = hold_key(tenant, call_id)
    if held:
        doc = {
            "tenant": tenant,
            "call_id": call_id,
            "held_at": datetime.now(UTC).isoformat(),
            "by": by,
        }
        services.store.put(key, json.dumps(doc).encode(), "application/json")
    else:
        services.store.delete(key)
    index_of(services).set_hold(tenant, call_id, held)
    services.metrics.inc("legal_holds_total", action="set" if held else "lifted")
    log.info("legal hold %s", "set" if held else "lifted", **ctx(tenant, call_id))
    return True


def delete_call_data(services: Services, tenant: str, call_id: str) -> dict[str, int] | None:
    """Delete a call's objects, then its index rows; None when the tenant has no such call.

    Objects go first: if the store fails half-way, the index row stays and the deletion
    can be retried. Raises CallHeld for a call under legal hold.
    """
    try:
        check_id(call_id, "call_id")
    except ValueError:
        return None
    index = index_of(services)
    store = services.store
    row = index.get_call(tenant, call_id)
    manifest = load_manifest(store, tenant, call_id)
    if row is None and manifest is None:
        return None
    if call_id in held_call_ids(store, index, tenant):
        raise CallHeld(f"call {call_id} is under legal hold")
    keys: set[str] = set()
    for prefix in {p for p in (row and row.prefix, manifest and manifest.prefix) if p}:
        keys.update(info.key for info in store.list(prefix))
    for single in (row and row.recording_key, manifest and manifest.recording_key):
        if single:
            keys.add(single)
    keys.add(manifest_key(tenant, call_id))
    store.delete_many(sorted(keys))
    removed = index.delete_call(tenant, call_id)
    services.metrics.inc("calls_deleted_total", reason="request")
    log.info(
        "call deleted on request: %d objects, %d utterances",
        len(keys),
        removed,
        **ctx(tenant, call_id),
    )
    return {"objects": len(keys), "utterances": removed}


class _TenantSweep:
    """One tenant's cutoff, holds and expired calls, worked out on first sight."""

    def __init__(self, services: Services, tenant: str, now: datetime) -> None:
        index = index_of(services)
        self.tenant = tenant
        self.cutoff = now - timedelta(days=services.settings.retention_days(tenant))
        self.held = held_call_ids(services.store, index, tenant)
        self.expired = {c.call_id for c in index.expired_calls(tenant, self.cutoff)} - self.held
        self.gone: set[str] = set()  # calls that lost objects in this sweep
        self._index = index

    def object_expired(self, info: ObjectInfo) -> bool | None:
        """True: delete; False: keep; None: held (kept)."""
        parsed = parse_key(info.key)
        if parsed is not None:
            _, day, call_id, _ = parsed
            if call_id in self.held:
                return None
            if call_id in self.expired or day + _DAY <= self.cutoff:
                self.gone.add(call_id)
                return True
            return False
        head = f"{self.tenant}/{MANIFEST_DIR}/"
        if info.key.startswith(head) and info.key.endswith(".json"):
            call_id = info.key[len(head) : -len(".json")]
            if call_id in self.held:
                return None
            if call_id in self.expired:
                return True
            if info.last_modified < self.cutoff:
                row = self._index.get_call(self.tenant, call_id)
                return row is None or row.started_at < self.cutoff
        return False


def sweep(services: Services, now: datetime | None = None) -> SweepReport:
    """Delete what is past its tenant's retention; held calls and younger ones stay."""
    t0 = time.monotonic()
    now = now or datetime.now(UTC)
    index = index_of(services)
    store = services.store
    report = SweepReport()
    tenants: dict[str, _TenantSweep] = {}

    def tenant_of(name: str) -> _TenantSweep | None:
        if name not in tenants:
            try:
                check_id(name, "tenant")
            except ValueError:
                return None
            tenants[name] = _TenantSweep(services, name, now)
        return tenants[name]

    doomed: list[str] = []
    # A prompt's text can hold personal data (a name, an amount said to one caller): the
    # cache is kept no longer than the default retention, and rendered again when next asked.
    prompt_cutoff = now - timedelta(days=services.settings.retention.days)
    for info in store.list(""):
        if info.key.startswith(PROMPT_CACHE_PREFIX):
            if info.last_modified < prompt_cutoff:
                doomed.append(info.key)
                report.prompts_deleted += 1
            continue
        ts = tenant_of(info.key.split("/", 1)[0])
        if ts is None:
            continue
        verdict = ts.object_expired(info)
        if verdict is None:
            report.held_kept += 1
        elif verdict:
            doomed.append(info.key)
    store.delete_many(doomed)
    report.objects_deleted = len(doomed)
    for name in index.tenants():
        tenant_of(name)
    for name, ts in sorted(tenants.items()):
        calls = sorted(ts.expired | (ts.gone - ts.held))
        report.utterances_deleted += index.delete_calls(name, calls)
        report.calls_deleted += len(calls)
        if calls or ts.gone:
            log.info(
                "retention: %d calls expired (cutoff %s)",
                len(calls),
                ts.cutoff.date(),
                **ctx(name, None),
            )
    report.tenants = sorted(tenants)
    report.seconds = time.monotonic() - t0
    services.metrics.inc("retention_objects_deleted_total", report.objects_deleted)
    services.metrics.inc("retention_calls_deleted_total", report.calls_deleted)
    services.metrics.set("retention_last_sweep_seconds", report.seconds)
    return report


def apply_lifecycle(services: Services) -> bool | None:
    """Set and verify the S3 lifecycle rules; None when the store has no lifecycle.

    S3 applies the shortest of overlapping rules, so the bucket-wide default is only set
    when no tenant keeps its data longer; tenants with their own days get a prefix rule.
    """
    ensure: Callable[[int, str], bool] | None = getattr(services.store, "ensure_lifecycle", None)
    if ensure is None:
        return None
    ret = services.settings.retention
    ok = True
    longer = sorted(t for t, d in ret.per_tenant_days.items() if d > ret.days)
    if longer:
        log.warning(
            "no bucket-wide lifecycle rule: tenants %s keep data longer than %d days;"
            " the sweeper expires the others",
            ", ".join(longer),
            ret.days,
        )
    elif not ensure(ret.days, ""):
        ok = False
    for tenant, days in sorted(ret.per_tenant_days.items()):
        if not ensure(days, f"{check_id(tenant, 'tenant')}/"):
            ok = False
    if not ok:
        log.warning(
            "the bucket lifecycle rule could not be set or verified; only the"
            " sweeper expires objects"
        )
        services.metrics.inc("lifecycle_failures_total")
    return ok


def background(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """The `retention` role: lifecycle rule at start, then a sweep per interval."""
    apply_lifecycle(services)
    interval = services.settings.retention.sweep_interval_s

    def loop() -> None:
        while not stop.is_set():
            try:
                r = sweep(services)
                log.info(
                    "retention sweep: %d objects, %d calls deleted in %.1f s",
                    r.objects_deleted,
                    r.calls_deleted,
                    r.seconds,
                )
            except Exception:  # a failed sweep is retried next interval, never fatal
                log.exception("retention sweep failed")
                services.metrics.inc("retention_errors_total")
            stop.wait(interval)

    t = threading.Thread(target=loop, name="retention-sweeper", daemon=True)
    t.start()
    return [t]
