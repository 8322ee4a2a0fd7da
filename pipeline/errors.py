"""Errors every layer may raise for the user to read."""

from __future__ import annotations


class CliError(Exception):
    """A user error of a `callpipe` command: printed as `callpipe: error: ...`, exit code 2."""


class ServiceUnavailable(CliError):
    """A service a process needs (Kafka, S3) did not answer, or refused, when it started.

    One line that names the service, its address and the setting that chose it, so the
    fix is in the message and not in a traceback.
    """

    def __init__(self, service: str, address: str, setting: str, reason: str) -> None:
        super().__init__(f"cannot reach {service} at {address} ({setting}): {reason}")
        self.service = service
