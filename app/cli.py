"""callpipe: the speech and AI side of a cloud PBX (live and batch transcription, agent
hints, text to speech and voice menus, voicebots)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

import recordings.cli
import robot.cli
import sim.pbx
import stt.cli
import tts.cli
from app import migrate, serve
from app.services import build_services
from pipeline.errors import CliError
from pipeline.logs import configure_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every package's subcommands (each sets `func(args) -> int`)."""
    parser = argparse.ArgumentParser(prog="callpipe", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.register(sub)
    migrate.register(sub)
    stt.cli.register(sub)
    sim.pbx.register(sub)
    recordings.cli.register(sub, build_services)
    robot.cli.register(sub)
    tts.cli.register(sub, build_services)
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
