"""`callpipe robot talk --scenario FILE`: try a scenario by typing the caller's answers
(text in, the robot's text out; no audio), and `callpipe robot validate FILE`.

In `talk`, a line is what the caller says; `#5` (or `#12#`) presses keys; an empty line is
silence (the no-input timeout passes); `/quit` hangs up. Prompts play instantly.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import IO, Any

from pipeline.errors import CliError
from robot.dialog import (
    Command,
    DialogEngine,
    Dtmf,
    Emit,
    Final,
    Hangup,
    PeerGone,
    Play,
    PromptFinished,
    Started,
    Tick,
    Transfer,
)
from robot.scenario import Scenario
from robot.validate import ScenarioInvalid, load_scenario


def register(sub: Any) -> None:
    """Add `robot talk` and `robot validate`."""
    p = sub.add_parser("robot", help="voicebot scenarios")
    rsub = p.add_subparsers(dest="robot_command", required=True)
    talk = rsub.add_parser("talk", help="try a scenario by typing the caller's answers")
    talk.add_argument("--scenario", required=True, type=Path, help="YAML or JSON scenario")
    talk.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable of the call (repeatable)",
    )
    talk.set_defaults(func=cmd_talk)
    val = rsub.add_parser("validate", help="check a scenario and list every error")
    val.add_argument("scenario", type=Path)
    val.set_defaults(func=cmd_validate)


def _load(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    try:
        return load_scenario(text)
    except ScenarioInvalid as exc:
        raise CliError("invalid scenario:\n  " + "\n  ".join(str(e) for e in exc.errors)) from exc


def _variables(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--var must be NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    """Print a summary of a valid scenario (errors exit 2)."""
    sc = _load(args.scenario)
    sys.stdout.write(
        f"{sc.name}: {len(sc.steps)} steps, slots {sorted(sc.slots())}, variables {sc.variables}\n"
    )
    return 0


def talk(
    scenario: Scenario,
    variables: dict[str, Any],
    lines: IO[str],
    out: IO[str],
    today: date | None = None,
) -> str:
    """Run the dialog over text lines; returns the outcome's result."""
    engine = DialogEngine(
        scenario, variables, "cli", "talk", no_input_timeout_s=5.0, today=today or date.today()
    )
    clock = [0.0]

    def now(step: float = 0.0) -> float:
        clock[0] += step
        return clock[0]

    def run(cmds: list[Command]) -> None:
        pending = list(cmds)
        while pending:
            cmd = pending.pop(0)
            if isinstance(cmd, Play):
                out.write(f"robot: {cmd.text}\n")
                pending.extend(engine.handle(PromptFinished(cmd.token, now(0.1))))
            elif isinstance(cmd, Transfer):
                where = cmd.target.queue or cmd.target.number
                out.write(f"robot: [transfer to {where}]\n")
            elif isinstance(cmd, Hangup):
                out.write(f"robot: [hang up: {cmd.outcome}]\n")
            elif isinstance(cmd, Emit) and cmd.event.type == "robot.outcome":
                slots = getattr(cmd.event, "slots", {})
                out.write(f"outcome: {engine.result}; slots: {slots}\n")

    run(engine.handle(Started(now())))
    for raw in lines:
        if engine.done:
            break
        line = raw.strip()
        if line == "/quit":
            run(engine.handle(PeerGone(now(1.0), "abandoned")))
        elif not line:
            run(engine.handle(Tick(now(engine.no_input_timeout_s + 0.1))))
        elif line.startswith("#"):
            for d in line[1:] or "#":
                run(engine.handle(Dtmf(d, now(0.2))))
        else:
            run(engine.handle(Final(line, int(now(1.0) * 1000), now())))
        out.flush()
    if not engine.done:
        run(engine.handle(PeerGone(now(1.0), "abandoned")))
    return engine.result or "abandoned"


def cmd_talk(args: argparse.Namespace) -> int:
    """Interactive text dialog on stdin/stdout."""
    sc = _load(args.scenario)
    variables = _variables(args.var)
    missing = [v for v in sc.variables if v not in variables]
    if missing:
        flags = ", ".join(f"--var {m}=..." for m in missing)
        raise CliError(f"give the scenario's variables: {flags}")
    if sys.stdin.isatty():
        sys.stdout.write(
            "(type the caller's answers; #digits for keys, empty line for "
            "silence, /quit to hang up)\n"
        )
    talk(sc, variables, sys.stdin, sys.stdout)
    return 0
