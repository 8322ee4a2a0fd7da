"""Config, bus, events, media, ingest, worker runner, API and CLI."""
