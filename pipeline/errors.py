"""Errors every layer may raise for the user to read."""

from __future__ import annotations


class CliError(Exception):
    """A user error of a `callpipe` command: printed as `callpipe: error: ...`, exit code 2."""
