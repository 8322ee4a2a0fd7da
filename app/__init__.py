"""The wiring layer: builds the services and assembles the packages into roles, the API and
the CLI."""
