"""One contract for both object stores: LocalStore (a directory) and MinioStore (the
minio SDK against a moto S3 server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pipeline.config import S3Settings
from pipeline.store import ObjectNotFound, ObjectStore, StoreError
from recordings.store.local import LocalStore
from recordings.store.minio import MinioStore

KEY = "acme/2026/11/21/call-1/recording.wav"


@pytest.fixture(params=["local", "minio"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "objects")
    else:
        endpoint: str = request.getfixturevalue("s3_endpoint")
        yield MinioStore(
            S3Settings(
                endpoint=endpoint,
                bucket=f"store-{uuid.uuid4().hex[:8]}",
                access_key="test",
                secret_key="test",
            )
        )


def test_put_get_range_stat(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    before = datetime.now(UTC) - timedelta(seconds=5)
    uri = store.put(KEY, data, "audio/wav")
    assert store.get(KEY) == data
    assert store.get_range(KEY, 100, 50) == data[100:150]
    assert store.get_range(KEY, len(data) - 10) == data[-10:]
    assert store.get_range(KEY, len(data) + 10, 5) == b""
    info = store.stat(KEY)
    assert info.key == KEY and info.size == len(data)
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert store.exists(KEY)
    assert store.key_from_uri(uri) == KEY
    assert store.uri(KEY) == uri
    # overwrite replaces the whole object
    store.put(KEY, b"short")
    assert store.get(KEY) == b"short" and store.stat(KEY).size == 5


def test_missing_objects(store: ObjectStore) -> None:
    missing = "acme/2026/11/21/none/x.json"
    for call in (
        lambda: store.get(missing),
        lambda: store.get_range(missing, 0, 10),
        lambda: store.stat(missing),
    ):
        with pytest.raises(ObjectNotFound) as err:
            call()
        assert err.value.key == missing and not err.value.retriable
    assert not store.exists(missing)
    store.delete(missing)  # absent is not an error
    with pytest.raises(ObjectNotFound):
        store.key_from_uri("gopher://elsewhere/a/b")


def test_list_by_prefix_and_delete(store: ObjectStore) -> None:
    keys = [
        "acme/2026/11/21/c1/recording.wav",
        "acme/2026/11/21/c1/transcript.json",
        "acme/2026/11/22/c2/recording.wav",
        "acme-bis/2026/11/21/c9/recording.wav",
        "globex/2026/11/21/c3/recording.wav",
    ]
    for i, k in enumerate(keys):
        store.put(k, b"x" * (i + 1))
    listed = list(store.list("acme/"))
    assert [o.key for o in listed] == keys[:3]
    assert [o.size for o in listed] == [1, 2, 3]
    assert [o.key for o in store.list("acme/2026/11/21/c1/")] == keys[:2]
    assert sorted(o.key for o in store.list("acme")) == sorted(keys[:4])  # plain string prefix
    assert sorted(o.key for o in store.list()) == sorted(keys)
    assert list(store.list("nobody/")) == []
    store.delete(keys[0])
    assert not store.exists(keys[0])
    assert [o.key for o in store.list("acme/2026/11/21/")] == [keys[1]]


def test_delete_many_removes_the_keys_given_and_nothing_else(store: ObjectStore) -> None:
    # more keys than one S3 multi-object delete request takes (1,000)
    doomed = [f"acme/2026/11/21/c{i:04d}/recording.wav" for i in range(1_003)]
    kept = ["acme/2026/11/21/c1003/recording.wav", "globex/2026/11/21/c0000/recording.wav"]
    for k in doomed + kept:
        store.put(k, b"x")
    delete_many = store.delete_many
    assert delete_many([*doomed, "acme/2026/11/21/never/recording.wav"]) >= len(doomed)
    assert sorted(o.key for o in store.list()) == kept
    assert delete_many([]) == 0
    with pytest.raises(StoreError, match="invalid key"):
        delete_many(["acme/../escape"])
    assert sorted(o.key for o in store.list()) == kept


def test_invalid_keys_are_refused(store: ObjectStore) -> None:
    for bad in ("", "/abs/key", "acme/../../etc/passwd", "a\\b"):
        with pytest.raises(StoreError) as err:
            store.put(bad, b"x")
        assert not err.value.retriable


def test_local_store_keeps_keys_inside_its_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    (tmp_path / "secret.txt").write_bytes(b"do not read")
    for bad in ("../secret.txt", "acme/../../secret.txt"):
        with pytest.raises(StoreError):
            store.get(bad)
        with pytest.raises(StoreError):
            store.put(bad, b"overwrite")
    assert (tmp_path / "secret.txt").read_bytes() == b"do not read"
    with pytest.raises(ObjectNotFound):
        store.key_from_uri((tmp_path / "secret.txt").as_uri())
    assert store.presigned_url(KEY) is None


def test_minio_uri_and_presigned_url(s3_endpoint: str) -> None:
    bucket = f"store-{uuid.uuid4().hex[:8]}"
    store = MinioStore(
        S3Settings(endpoint=s3_endpoint, bucket=bucket, access_key="test", secret_key="test")
    )
    uri = store.put(KEY, b"RIFF....WAVE", "audio/wav")
    assert uri == f"s3://{bucket}/{KEY}"
    with pytest.raises(ObjectNotFound):
        store.key_from_uri(f"s3://another-bucket/{KEY}")
    url = store.presigned_url(KEY, expires_s=60)
    assert url is not None and "X-Amz-Signature=" in url
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == b"RIFF....WAVE"
    # a second store on the same bucket finds it (bucket creation is idempotent)
    again = MinioStore(
        S3Settings(endpoint=s3_endpoint, bucket=bucket, access_key="test", secret_key="test")
    )
    assert again.get(KEY) == b"RIFF....WAVE"


def test_minio_unreachable_is_retriable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as err:
        MinioStore(S3Settings(endpoint=f"127.0.0.1:{port}", bucket="nowhere"))
    assert err.value.retriable


def test_local_delete_many_prunes_emptied_folders_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    gone = [f"acme/2026/11/21/call-{i}/{n}" for i in range(3) for n in ("a.wav", "b.json")]
    kept = ["acme/2026/11/21/call-9/a.wav", "acme/calls/call-9.json"]
    for key in gone + kept + ["acme/calls/call-0.json"]:
        store.put(key, b"x")
    assert store.delete_many([*gone, "acme/calls/call-0.json", "acme/2026/01/01/none/x"]) == 7
    assert sorted(i.key for i in store.list("")) == sorted(kept)
    root = tmp_path / "objects"
    assert not (root / "acme/2026/11/21/call-0").exists()
    assert (root / "acme/2026/11/21/call-9").is_dir() and (root / "acme/calls").is_dir()
    assert store.delete_many(kept) == 2
    assert list(root.iterdir()) == []  # every emptied folder went, the root stays
    assert store.delete_many(kept) == 0  # deleting again is a no-op


def test_local_delete_many_stays_inside_its_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"keep")
    (tmp_path / "objects" / "acme").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError) as err:
        store.delete_many(["acme/victim.txt"])
    assert not err.value.retriable
    for bad in ("../outside/victim.txt", "/abs/key", "a//b", "a\\b", ""):
        with pytest.raises(StoreError):
            store.delete_many([bad])
    assert (outside / "victim.txt").read_bytes() == b"keep"
