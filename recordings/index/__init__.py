"""The transcript search index."""
