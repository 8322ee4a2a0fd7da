"""The embedded object store: a local directory, keys as relative paths."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from recordings.store.base import ObjectInfo, ObjectNotFound, StoreError


class LocalStore:
    """Objects as files under `root`; writes are atomic (temp file then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or "\\" in key:
            raise StoreError(f"invalid key {key!r}", retriable=False)
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise StoreError(f"key {key!r} escapes the store", retriable=False)
        return p

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Write atomically so a reader never sees half an object."""
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(key)

    def get(self, key: str) -> bytes:
        """Whole object."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def get_range(self, key: str, start: int, length: int | None = None) -> bytes:
        """Bytes [start, start+length)."""
        try:
            with self._path(key).open("rb") as f:
                f.seek(start)
                return f.read() if length is None else f.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def stat(self, key: str) -> ObjectInfo:
        """Size and modification time."""
        p = self._path(key)
        if not p.is_file():
            raise ObjectNotFound(key)
        st = p.stat()
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file and any folders it leaves empty."""
        p = self._path(key)
        p.unlink(missing_ok=True)
        parent = p.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk the folder under the prefix's directory part, in key order."""
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def uri(self, key: str) -> str:
        """`file://` URI of the object."""
        return self._path(key).as_uri()

    def key_from_uri(self, uri: str) -> str:
        """Key of a `file://` URI under this store's root (or of a bare key)."""
        if uri.startswith("file://"):
            p = Path(uri[len("file://") :]).resolve()
            if self.root not in p.parents:
                raise ObjectNotFound(uri)
            return p.relative_to(self.root).as_posix()
        if "://" in uri:
            raise ObjectNotFound(uri)
        return uri

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A directory has no presigned URLs; the API streams the object instead."""
        return None
