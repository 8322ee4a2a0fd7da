"""The object store: MinIO/S3 in distributed mode, a local directory in embedded mode."""

from recordings.store.base import ObjectInfo, ObjectNotFound, ObjectStore, StoreError

__all__ = ["ObjectInfo", "ObjectNotFound", "ObjectStore", "StoreError"]
