"""`callpipe say "TEXT" --format ulaw8k -o out.wav [--rate R]`."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import CliError
from pipeline.services import ServicesFactory
from tts.formats import FORMATS, FormatError, get_format
from tts.synth import Synthesizer
from tts.text import TextError


def register(sub: Any, build_services: ServicesFactory) -> None:
    """Add `say`."""
    p = sub.add_parser("say", help="speak text with the Piper voice into an audio file")
    p.add_argument("text")
    p.add_argument("--format", default="ulaw8k", help=f"one of {', '.join(sorted(FORMATS))}")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--rate", type=float, default=None, help="speaking rate, 1.0 = normal")
    p.set_defaults(func=partial(cmd_say, build_services=build_services))


def cmd_say(args: argparse.Namespace, build_services: ServicesFactory) -> int:
    """Render the text and write it to the output file."""
    settings = Settings()
    rate = args.rate if args.rate is not None else settings.tts.default_rate
    if not 0.25 < rate <= 4.0:
        raise CliError(f"--rate must be in (0.25, 4.0], got {rate}")
    try:
        fmt = get_format(args.format)
    except FormatError as exc:
        raise CliError(str(exc)) from exc
    services = build_services(settings)
    try:
        data = Synthesizer(services).render(args.text, fmt, rate)
    except TextError as exc:
        raise CliError(str(exc)) from exc
    finally:
        services.close()
    try:
        args.output.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc}") from exc
    sys.stdout.write(f"{args.output}: {fmt.name}, {len(data)} bytes\n")
    return 0
