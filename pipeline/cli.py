"""The `callpipe` command. Each package contributes its subcommands through `register`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from pipeline.logs import configure_logging

# Each module holds `register(subparsers)`; a subcommand sets `func(args) -> int`.
COMMAND_MODULES = [
    "pipeline.serve",
    "stt.cli",
    "pipeline.simulate",
    "recordings.cli",
    "robot.cli",
    "tts.cli",
]

log = logging.getLogger(__name__)


class CliError(Exception):
    """A user error: printed as `callpipe: error: ...` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every package's subcommands."""
    parser = argparse.ArgumentParser(prog="callpipe", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = args.command in {"transcribe", "say", "keys"}
    configure_logging(args.log_level or ("WARNING" if quiet else "INFO"))
    try:
        code: int = args.func(args)
    except CliError as exc:
        sys.stderr.write(f"callpipe: error: {exc}\n")
        return 2
    except ValidationError as exc:
        sys.stderr.write(f"callpipe: error: bad configuration: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
