"""Retention on S3: MinioStore.ensure_lifecycle leaves expiration rules on the bucket,
readable by any S3 client (here the minio SDK directly, against moto)."""

from __future__ import annotations

import logging
import uuid

import pytest
from minio import Minio

from pipeline.config import S3Settings
from pipeline.store import StoreError
from recordings.store.minio import MinioStore


def _settings(endpoint: str) -> S3Settings:
    return S3Settings(
        endpoint=endpoint, bucket=f"life-{uuid.uuid4().hex[:8]}", access_key="k", secret_key="s"
    )


def _rules(client: Minio, bucket: str) -> dict[str, tuple[str, int]]:
    config = client.get_bucket_lifecycle(bucket)
    assert config is not None
    out = {}
    for r in config.rules:
        assert r.status == "Enabled" and r.expiration is not None and r.rule_filter is not None
        out[str(r.rule_id)] = (str(r.rule_filter.prefix), int(r.expiration.days or 0))
    return out


def test_ensure_lifecycle_sets_and_updates_rules(s3_endpoint: str) -> None:
    settings = _settings(s3_endpoint)
    store = MinioStore(settings)
    sdk = Minio(s3_endpoint, access_key="k", secret_key="s", secure=False, region="us-east-1")
    assert store.lifecycle_rules() == []

    assert store.ensure_lifecycle(90) is True
    assert list(_rules(sdk, settings.bucket).values()) == [("", 90)]

    # per-tenant rules live beside the bucket-wide one; setting one again replaces it
    assert store.ensure_lifecycle(30, "acme/") is True
    assert store.ensure_lifecycle(7, "globex/") is True
    assert store.ensure_lifecycle(14, "acme/") is True
    assert sorted(_rules(sdk, settings.bucket).values()) == [
        ("", 90),
        ("acme/", 14),
        ("globex/", 7),
    ]
    assert store.lifecycle_rules() == [("", 90), ("acme/", 14), ("globex/", 7)]
    assert store.ensure_lifecycle(90) is True  # idempotent
    assert len(_rules(sdk, settings.bucket)) == 3

    with pytest.raises(StoreError):
        store.ensure_lifecycle(0)


def test_ensure_lifecycle_reports_a_refusal(
    s3_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(s3_endpoint)
    store = MinioStore(settings)
    sdk = Minio(s3_endpoint, access_key="k", secret_key="s", secure=False, region="us-east-1")
    sdk.remove_bucket(settings.bucket)  # the server now answers NoSuchBucket
    with caplog.at_level(logging.WARNING, logger="recordings.store.minio"):
        assert store.ensure_lifecycle(90) is False
    assert any("refused lifecycle rule" in r.getMessage() for r in caplog.records)
