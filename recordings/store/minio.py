"""The distributed object store: one MinIO/S3 bucket through the minio SDK.

Also owns the bucket's retention: lifecycle rules that expire objects after N days,
bucket-wide or per tenant prefix (`{tenant}/`).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry

from pipeline.config import S3Settings
from pipeline.store import ObjectInfo, ObjectNotFound, StoreError

log = logging.getLogger(__name__)

_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NoSuchVersion"}
_RETRIABLE_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "OperationAborted",
}
_RULE_PREFIX = "callpipe-expire"
LifecycleRules = list[tuple[str, int]]  # (prefix, days); named because `list` is a method here


def _rule_id(prefix: str) -> str:
    """Rule ids are limited to 255 characters; keep them readable and stable per prefix."""
    tail = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix.rstrip("/")) or "all"
    return f"{_RULE_PREFIX}-{tail}"[:255]


class MinioStore:
    """Objects in one bucket, created on first use in the configured region."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        # Bounded timeouts and retries: a stuck S3 must surface as a retriable error,
        # not hang a worker for the SDK's default five minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=60.0),
            maxsize=16,
            retries=Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )
        try:
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket, location=settings.region)
                log.info("created bucket %s in %s", self.bucket, settings.region)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                self._fail(exc, self.bucket)
        except (MinioException, HTTPError) as exc:
            self._fail(exc, self.bucket)

    # -- errors -----------------------------------------------------------------------
    def _fail(self, exc: Exception, key: str) -> NoReturn:
        if isinstance(exc, S3Error):
            if exc.code in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            status = exc.response.status if exc.response is not None else 0
            retriable = exc.code in _RETRIABLE_CODES or status >= 500
            msg = f"S3 {exc.code} on {key!r}: {exc.message}"
            raise StoreError(msg, retriable=retriable) from exc
        if isinstance(exc, (ServerError, InvalidResponseError, HTTPError)):
            msg = f"S3 unreachable or failing on {key!r}: {exc}"
            raise StoreError(msg, retriable=True) from exc
        raise StoreError(f"S3 failed on {key!r}: {exc}", retriable=False) from exc

    @staticmethod
    def _check(key: str) -> str:
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or "\\" in key
            or any(p in ("", ".", "..") for p in parts)
            or len(key.encode()) > 1024
        ):
            raise StoreError(f"invalid key {key!r}", retriable=False)
        return key

    # -- objects ------------------------------------------------------------------------
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Upload bytes in one request (S3 makes the object visible only once complete)."""
        self._check(key)
        try:
            self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )
        except (MinioException, HTTPError) as exc:
            self._fail(exc, key)
        return self.uri(key)

    def _read(self, key: str, offset: int = 0, length: int = 0) -> bytes:
        self._check(key)
        try:
            resp = self._client.get_object(self.bucket, key, offset=offset, length=length)
        except (MinioException, HTTPError) as exc:
            self._fail(exc, key)
        try:
            return bytes(resp.read())
        except HTTPError as exc:
            self._fail(exc, key)
        finally:
            resp.close()
            resp.release_conn()

    def get(self, key: str) -> bytes:
        """Whole object."""
        return self._read(key)

    def get_range(self, key: str, start: int, length: int | None = None) -> bytes:
        """Bytes [start, start+length); empty past the end, as a file read would be."""
        if start < 0 or (length is not None and length < 0):
            raise StoreError(f"invalid range {start}+{length}", retriable=False)
        if length == 0:
            self.stat(key)  # still report a missing object
            return b""
        try:
            return self._read(key, offset=start, length=length or 0)
        except StoreError as exc:
            # S3 answers 416 for a start past the end; a file read returns nothing there
            cause = exc.__cause__
            if isinstance(cause, S3Error) and cause.code == "InvalidRange":
                return b""
            raise

    def stat(self, key: str) -> ObjectInfo:
        """Size and last modification time."""
        self._check(key)
        try:
            obj = self._client.stat_object(self.bucket, key)
        except (MinioException, HTTPError) as exc:
            self._fail(exc, key)
        modified = obj.last_modified or datetime.fromtimestamp(0, UTC)
        return ObjectInfo(key, int(obj.size or 0), modified)

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove an object; S3 treats an absent one as deleted already."""
        self._check(key)
        try:
            self._client.remove_object(self.bucket, key)
        except S3Error as exc:
            if exc.code not in _NOT_FOUND:
                self._fail(exc, key)
        except (MinioException, HTTPError) as exc:
            self._fail(exc, key)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove objects with S3's multi-object delete (the SDK sends up to 1,000 keys a
        request) instead of a request per key; returns how many keys were deleted (an
        absent one counts, as S3 says). Raises StoreError naming the first key refused."""
        names = [self._check(k) for k in keys]
        if not names:
            return 0
        try:
            errors = self._client.remove_objects(self.bucket, (DeleteObject(n) for n in names))
            refused = [e for e in errors if e.code not in _NOT_FOUND]
        except (MinioException, HTTPError) as exc:
            self._fail(exc, names[0])
        if refused:
            first = refused[0]
            raise StoreError(
                f"S3 refused to delete {len(refused)} of {len(names)} objects, first"
                f" {first.name!r}: {first.code} {first.message}",
                retriable=first.code in _RETRIABLE_CODES,
            )
        return len(names)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, recursively, in key order."""
        try:
            objects = self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
            for obj in objects:
                if obj.is_dir or obj.object_name is None:
                    continue
                modified = obj.last_modified or datetime.fromtimestamp(0, UTC)
                yield ObjectInfo(obj.object_name, int(obj.size or 0), modified)
        except (MinioException, HTTPError) as exc:
            self._fail(exc, prefix)

    def uri(self, key: str) -> str:
        """`s3://bucket/key`."""
        return f"s3://{self.bucket}/{self._check(key)}"

    def key_from_uri(self, uri: str) -> str:
        """Key of an `s3://` URI of this bucket (or of a bare key)."""
        head = f"s3://{self.bucket}/"
        if uri.startswith(head):
            return self._check(uri[len(head) :])
        if "://" in uri:
            raise ObjectNotFound(uri)
        return self._check(uri)

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A signed GET URL valid for `expires_s` seconds (S3 allows at most 7 days)."""
        self._check(key)
        expires = timedelta(seconds=max(1, min(expires_s, 7 * 24 * 3600)))
        try:
            return str(self._client.presigned_get_object(self.bucket, key, expires=expires))
        except (MinioException, HTTPError) as exc:
            self._fail(exc, key)

    # -- retention ------------------------------------------------------------------------
    def _lifecycle(self) -> LifecycleConfig | None:
        return self._client.get_bucket_lifecycle(self.bucket)

    def ensure_lifecycle(self, days: int, prefix: str = "") -> bool:
        """Expire objects under `prefix` (all when empty) after `days`; True once read back.

        S3 applies the shortest of overlapping rules, so a tenant rule can only shorten
        a bucket-wide one. Returns False (and logs why) when the server refuses rules.
        """
        if days < 1:
            raise StoreError(f"retention must be at least one day, not {days}", retriable=False)
        rule_id = _rule_id(prefix)
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=prefix),
            rule_id=rule_id,
            expiration=Expiration(days=days),
        )
        try:
            current = self._lifecycle()
            others = [r for r in (current.rules if current else []) if r.rule_id != rule_id]
            self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig([*others, rule]))
            readback = self._lifecycle()
        except (MinioException, HTTPError, ValueError) as exc:
            log.warning("bucket %s refused lifecycle rule %s: %s", self.bucket, rule_id, exc)
            return False
        ok = any(
            r.rule_id == rule_id
            and r.status == ENABLED
            and r.expiration is not None
            and r.expiration.days == days
            and _rule_prefix(r) == prefix
            for r in (readback.rules if readback else [])
        )
        if not ok:
            log.warning("bucket %s did not keep lifecycle rule %s", self.bucket, rule_id)
        return ok

    def lifecycle_rules(self) -> LifecycleRules:
        """(prefix, days) of every enabled expiration rule on the bucket."""
        try:
            config = self._lifecycle()
        except (MinioException, HTTPError) as exc:
            self._fail(exc, self.bucket)
        out: list[tuple[str, int]] = []
        for r in config.rules if config else []:
            if r.status == ENABLED and r.expiration is not None and r.expiration.days:
                out.append((_rule_prefix(r), int(r.expiration.days)))
        return sorted(out)


def _rule_prefix(rule: Rule) -> str:
    if rule.rule_filter is not None:
        if rule.rule_filter.prefix is not None:
            return rule.rule_filter.prefix
        if rule.rule_filter.and_operator is not None:
            return rule.rule_filter.and_operator.prefix or ""
    return ""
