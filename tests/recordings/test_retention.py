"""Retention: after a sweep, objects and index rows older than the tenant's retention are
gone; held calls and younger ones stay. Deleting a call on request; the lifecycle rule on
the S3 bucket (moto); the sweep command; the background role."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from minio import Minio

import recordings.retention
from app.api import create_app
from app.cli import main
from app.roles import BACKGROUND, start_role
from pipeline.auth import keys_of
from pipeline.bus.inproc import InProcessBus
from pipeline.catalog import manifest_key, new_manifest, save_manifest
from pipeline.config import Settings
from pipeline.ids import call_key
from pipeline.services import Services
from recordings.index import index_of
from recordings.index.base import CallMeta, UtteranceRow
from recordings.retention import apply_lifecycle, delete_call_data, set_hold, sweep
from recordings.store.local import LocalStore
from recordings.store.minio import MinioStore
from tts.cache import PromptCache
from tts.formats import get_format

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NAMES = ("recording.wav", "transcript.json", "transcript.vtt")


def make_call(
    services: Services, tenant: str, call_id: str, age_days: float, indexed: bool = True
) -> datetime:
    """A call of `age_days` ago: three objects, a manifest, and (optionally) index rows."""
    started = NOW - timedelta(days=age_days)
    for name in NAMES:
        services.store.put(call_key(tenant, call_id, started, name), b"x" * 10)
    save_manifest(
        services.store,
        new_manifest(
            tenant,
            call_id,
            started,
            status="transcribed",
            recording_key=call_key(tenant, call_id, started, "recording.wav"),
        ),
    )
    if isinstance(services.store, LocalStore):
        old = started.timestamp()
        path = services.store.root / manifest_key(tenant, call_id)
        os.utime(path, (old, old))
    if indexed:
        index = index_of(services)
        index.upsert_call(CallMeta(tenant, call_id, started_at=started))
        index.upsert_utterances(
            [UtteranceRow(tenant, call_id, f"u-{call_id}", "agent", 0, 1, f"bonjour {call_id}")]
        )
    return started


def objects_of(services: Services, tenant: str, call_id: str, started: datetime) -> list[str]:
    keys = [call_key(tenant, call_id, started, n) for n in NAMES]
    keys.append(manifest_key(tenant, call_id))
    return [k for k in keys if services.store.exists(k)]


def test_sweep_deletes_expired_keeps_young_and_held(services: Services) -> None:
    services.settings.retention.per_tenant_days = {"short": 7, "long": 365}
    calls = {
        ("acme", "old"): make_call(services, "acme", "old", 91),
        ("acme", "young"): make_call(services, "acme", "young", 89),
        ("acme", "held"): make_call(services, "acme", "held", 200),
        ("acme", "orphan"): make_call(services, "acme", "orphan", 120, indexed=False),
        ("acme", "fresh-orphan"): make_call(services, "acme", "fresh-orphan", 3, indexed=False),
        ("short", "s-old"): make_call(services, "short", "s-old", 8),
        ("short", "s-young"): make_call(services, "short", "s-young", 6),
        ("long", "l-kept"): make_call(services, "long", "l-kept", 300),
    }
    assert set_hold(services, "acme", "held", True, "test")
    report = sweep(services, now=NOW)
    gone = {("acme", "old"), ("acme", "orphan"), ("short", "s-old")}
    index = index_of(services)
    for (tenant, cid), started in calls.items():
        left = objects_of(services, tenant, cid, started)
        row = index.get_call(tenant, cid)
        if (tenant, cid) in gone:
            assert left == [], (tenant, cid)
            assert row is None, (tenant, cid)
        else:
            assert len(left) == 4, (tenant, cid, left)
            if not cid.endswith("orphan"):
                assert row is not None and row.utterances == 1, (tenant, cid)
    assert report.objects_deleted == 12
    assert report.calls_deleted == 3  # orphan had objects only; its id is counted too
    assert report.utterances_deleted == 2
    assert report.held_kept == 4  # three objects and the manifest of the held call
    # a second sweep finds nothing more
    assert sweep(services, now=NOW).objects_deleted == 0
    # lifting the hold lets the next sweep take it
    assert set_hold(services, "acme", "held", False, "test")
    sweep(services, now=NOW)
    assert objects_of(services, "acme", "held", calls[("acme", "held")]) == []
    assert index.get_call("acme", "held") is None


def test_hold_marker_alone_protects_a_call(services: Services) -> None:
    """Another process may hold the call: the marker in the store is enough."""
    started = make_call(services, "acme", "m1", 100)
    services.store.put("acme/holds/m1.json", json.dumps({"call_id": "m1"}).encode())
    sweep(services, now=NOW)
    assert len(objects_of(services, "acme", "m1", started)) == 4
    assert index_of(services).get_call("acme", "m1") is not None


def test_rendered_prompts_expire_with_the_default_retention(services: Services) -> None:
    """A prompt may speak personal data: the TTS cache is kept retention.days at most."""
    cache = PromptCache(services)
    text = "Hello Mister Dupont, this is a call about your contract."
    cache.get(text, get_format("ulaw8k"), 1.0)
    key = cache.key(text, get_format("ulaw8k"), 1.0)
    assert key.startswith("_tts/") and services.store.exists(key)
    now = datetime.now(UTC)
    assert sweep(services, now=now + timedelta(days=89)).prompts_deleted == 0
    assert services.store.exists(key)
    report = sweep(services, now=now + timedelta(days=91))
    assert (report.prompts_deleted, report.objects_deleted) == (1, 1)
    assert not services.store.exists(key)
    assert report.tenants == []  # the cache is not taken for a tenant


def search_only_client(services: Services) -> TestClient:
    """The full app (the deletion ends a live call through the ingest)."""
    return TestClient(create_app(services))


def test_delete_on_request_removes_objects_and_rows(services: Services) -> None:
    started = make_call(services, "acme", "d1", 2)
    make_call(services, "acme", "d2", 2)
    admin = keys_of(services).create("acme", "admin")
    analyst = keys_of(services).create("acme", "analyst")
    client = search_only_client(services)
    r = client.delete("/v1/calls/d1", headers={"Authorization": f"Bearer {analyst}"})
    assert r.status_code == 403
    r = client.delete("/v1/calls/d1", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"call_id": "d1", "deleted": True, "objects": 4, "utterances": 1}
    assert objects_of(services, "acme", "d1", started) == []
    assert index_of(services).get_call("acme", "d1") is None
    assert index_of(services).get_call("acme", "d2") is not None  # the other call stays
    r = client.delete("/v1/calls/d1", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 404
    # a held call refuses deletion
    r = client.post("/v1/calls/d2/hold", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and r.json()["held"] is True
    r = client.delete("/v1/calls/d2", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 409 and "legal hold" in r.json()["detail"]
    r = client.get("/v1/calls/d2", headers={"Authorization": f"Bearer {analyst}"})
    assert r.json()["held"] is True
    assert (
        client.delete("/v1/calls/d2/hold", headers={"Authorization": f"Bearer {admin}"}).status_code
        == 200
    )
    assert delete_call_data(services, "acme", "d2") == {"objects": 4, "utterances": 1}


def test_sweep_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("CALLPIPE_RETENTION__DAYS", "30")
    store = LocalStore(data / "objects")
    old = datetime.now(UTC) - timedelta(days=40)
    store.put(call_key("acme", "cli-old", old, "recording.wav"), b"x")
    young = datetime.now(UTC) - timedelta(days=20)
    store.put(call_key("acme", "cli-young", young, "recording.wav"), b"x")
    assert main(["retention", "sweep", "--data", str(data)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["objects_deleted"] == 1 and out["tenants"] == ["acme"]
    assert out["lifecycle_rule"] is None  # a local store has no lifecycle rules
    assert not store.exists(call_key("acme", "cli-old", old, "recording.wav"))
    assert store.exists(call_key("acme", "cli-young", young, "recording.wav"))


def s3_services(tmp_path: Path, endpoint: str, bucket: str, **retention: object) -> Services:
    settings = Settings(
        data_dir=tmp_path / "data",
        mode="distributed",
        s3={"endpoint": endpoint, "bucket": bucket, "access_key": "k", "secret_key": "s"},
        retention={"sweep_interval_s": 3600, **retention},
    )
    return Services(settings=settings, bus=InProcessBus(1), store=MinioStore(settings.s3))


def lifecycle(endpoint: str, bucket: str) -> list[tuple[str, int]]:
    sdk = Minio(endpoint, access_key="k", secret_key="s", secure=False, region="us-east-1")
    config = sdk.get_bucket_lifecycle(bucket)
    assert config is not None
    return sorted(
        (str(r.rule_filter.prefix), int(r.expiration.days or 0))
        for r in config.rules
        if r.rule_filter is not None and r.expiration is not None
    )


def test_retention_role_sets_the_bucket_lifecycle_and_sweeps_s3(
    tmp_path: Path, s3_endpoint: str
) -> None:
    assert BACKGROUND["retention"] is recordings.retention.background
    bucket = f"ret-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    services = s3_services(tmp_path, s3_endpoint, bucket, days=90, per_tenant_days={"short": 30})
    stop = threading.Event()
    now = datetime.now(UTC)
    expired = call_key("acme", "s3-old", now - timedelta(days=95), "recording.wav")
    kept = call_key("acme", "s3-new", now - timedelta(days=5), "recording.wav")
    services.store.put(expired, b"x")
    services.store.put(kept, b"x")
    threads = start_role(services, "retention", stop)
    try:
        assert lifecycle(s3_endpoint, bucket) == [("", 90), ("short/", 30)]
        deadline = time.monotonic() + 20
        while services.store.exists(expired) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not services.store.exists(expired)
        assert services.store.exists(kept)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        services.close()


def test_no_bucket_wide_rule_when_a_tenant_keeps_longer(
    tmp_path: Path, s3_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"ret-long-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    services = s3_services(tmp_path, s3_endpoint, bucket, days=90, per_tenant_days={"archive": 365})
    with caplog.at_level(logging.WARNING, logger="recordings.retention"):
        assert apply_lifecycle(services) is True
    assert lifecycle(s3_endpoint, bucket) == [("archive/", 365)]
    assert "archive keep data longer than 90 days" in caplog.text
    services.close()


class RefusingStore(LocalStore):
    """A store whose server refuses lifecycle rules (as some S3 gateways do)."""

    def ensure_lifecycle(self, days: int, prefix: str = "") -> bool:
        return False


def test_a_refused_lifecycle_rule_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    services = Services(
        settings=settings, bus=InProcessBus(1), store=RefusingStore(tmp_path / "objects")
    )
    with caplog.at_level(logging.WARNING, logger="recordings.retention"):
        assert apply_lifecycle(services) is False
    assert "could not be set or verified" in caplog.text
    assert services.metrics.total("lifecycle_failures_total") == 1
    services.close()
