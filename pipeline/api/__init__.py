"""The HTTP API (FastAPI): one app, routers contributed by each package."""
