"""Object store, retention, transcript artifacts and the search index."""
