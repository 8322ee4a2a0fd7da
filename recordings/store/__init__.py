"""The object stores: MinIO/S3 in distributed mode, a local directory in embedded mode.

Both honour `pipeline.store.ObjectStore`, the interface every package codes against.
"""
