"""Check a menu and report every error at once, each with its path."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from pipeline.graph import cycles
from tts.ivr.engine import fold
from tts.ivr.menu import Action, Menu, Node
from tts.text import TextError, prepare

_DAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
_AUDIO_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,200}$")
_RANGE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")


class MenuInvalid(ValueError):
    """A menu with errors; `errors` lists "path: message" strings."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _actions(menu: Menu) -> list[tuple[str, str, Action]]:
    out = []
    for name, node in menu.nodes.items():
        for i, opt in enumerate(node.options):
            out.append((name, f"nodes.{name}.options[{i}].action", opt.action))
        if node.action:
            out.append((name, f"nodes.{name}.action", node.action))
        out.append((name, f"nodes.{name}.on_fail", node.on_fail))
    return out


def _action_errors(path: str, a: Action, nodes: set[str]) -> list[str]:
    errs = [f"{path}: unknown target node {t!r}" for t in a.targets() if t not in nodes]
    need = {
        "goto": ["node"],
        "transfer": [],
        "voicemail": [],
        "hangup": [],
        "hours": ["timezone", "open", "closed"],
    }[a.kind]
    errs += [f"{path}.{f}: required for {a.kind}" for f in need if not getattr(a, f)]
    if a.kind == "transfer" and not (a.queue or a.extension):
        errs.append(f"{path}: transfer needs a queue or an extension")
    if a.kind == "hours":
        if a.timezone:
            try:
                ZoneInfo(a.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                errs.append(f"{path}.timezone: unknown timezone {a.timezone!r}")
        for day, ranges in a.schedule.items():
            if day not in _DAYS:
                errs.append(f"{path}.schedule.{day}: unknown day (use mon..sun)")
            for r in ranges:
                if not _RANGE.match(r):
                    errs.append(f"{path}.schedule.{day}: bad range {r!r} (HH:MM-HH:MM)")
                elif r[:5] >= r[6:]:
                    errs.append(
                        f"{path}.schedule.{day}: range {r!r} ends before it starts "
                        "(split a range that passes midnight in two days)"
                    )
    return errs


def validate(
    menu: Menu, max_chars: int = 5000, audio_exists: Callable[[str], bool] | None = None
) -> list[str]:
    """Every error of a parsed menu, as "path: message"; empty when valid.

    Prompt texts are checked as the synthesiser would (`max_chars`, characters); audio
    prompts are looked up with `audio_exists` (a relative key) when it is given.
    """
    nodes = set(menu.nodes)
    errs: list[str] = []
    if menu.start not in nodes:
        errs.append(f"start: unknown node {menu.start!r}")
    for name, node in menu.nodes.items():
        path = f"nodes.{name}"
        has_text = bool(node.prompt and node.prompt.strip())
        if node.options and not has_text and not node.audio:
            errs.append(f"{path}.prompt: missing prompt (the node asks for input)")
        if has_text and node.audio:
            errs.append(f"{path}.audio: give a prompt text or an audio key, not both")
        if not node.options and not node.action:
            errs.append(f"{path}: no options and no action (the call would stall)")
        errs += _prompt_errors(path, node, max_chars, audio_exists)
        errs += _option_errors(path, node)
    for _, path, action in _actions(menu):
        errs += _action_errors(path, action, nodes)
    errs += _reachability(menu) + _loops(menu)
    return errs


def _prompt_errors(
    path: str, node: Node, max_chars: int, audio_exists: Callable[[str], bool] | None
) -> list[str]:
    errs = []
    for field in ("prompt", "no_input_prompt", "no_match_prompt"):
        text = getattr(node, field)
        if text is None or (field == "prompt" and not text.strip()):
            continue  # a missing main prompt is reported above when it matters
        try:
            prepare(text, max_chars)
        except TextError as exc:
            errs.append(f"{path}.{field}: {exc}")
    if node.audio is not None:
        if not _AUDIO_KEY.match(node.audio) or ".." in node.audio.split("/"):
            errs.append(
                f"{path}.audio: bad object key {node.audio!r} (relative, "
                "letters, digits, '-', '_', '.', '/')"
            )
        elif audio_exists is not None and not audio_exists(node.audio):
            errs.append(f"{path}.audio: no object {node.audio!r} in this tenant's store")
    return errs


def _option_errors(path: str, node: Node) -> list[str]:
    errs = []
    digits: dict[str, int] = {}
    words: dict[str, int] = {}
    for i, opt in enumerate(node.options):
        if not opt.digit and not opt.keywords:
            errs.append(f"{path}.options[{i}]: needs a digit or keywords")
        if opt.digit:
            if opt.digit in digits:
                errs.append(
                    f"{path}.options[{i}].digit: digit {opt.digit!r} used twice "
                    f"(also options[{digits[opt.digit]}])"
                )
            digits.setdefault(opt.digit, i)
        for j, kw in enumerate(opt.keywords):
            folded = fold(kw)
            kpath = f"{path}.options[{i}].keywords[{j}]"
            if not folded:
                errs.append(f"{kpath}: empty keyword")
            elif folded in words and words[folded] != i:
                errs.append(f"{kpath}: keyword {kw!r} used twice (also options[{words[folded]}])")
            elif folded in words:
                errs.append(f"{kpath}: keyword {kw!r} repeated in the same option")
            else:
                words[folded] = i
    return errs


def _reachability(menu: Menu) -> list[str]:
    if menu.start not in menu.nodes:
        return []
    edges: dict[str, set[str]] = {n: set() for n in menu.nodes}
    for src, _, a in _actions(menu):
        edges[src].update(t for t in a.targets() if t in menu.nodes)
    seen, todo = {menu.start}, [menu.start]
    while todo:
        for t in edges[todo.pop()] - seen:
            seen.add(t)
            todo.append(t)
    return [
        f"nodes.{n}: unreachable from start {menu.start!r}" for n in menu.nodes if n not in seen
    ]


def _loops(menu: Menu) -> list[str]:
    """Cycles through nodes that never wait for input (the call would spin forever)."""
    auto = {
        n: [t for t in node.action.targets() if t in menu.nodes]
        for n, node in menu.nodes.items()
        if not node.options and node.action
    }
    return [f"nodes.{c[0]}: loop without input: " + " -> ".join(c) for c in cycles(auto)]


def load_menu(
    doc: Any, max_chars: int = 5000, audio_exists: Callable[[str], bool] | None = None
) -> Menu:
    """Parse and validate a menu document (dict); MenuInvalid lists every error."""
    try:
        menu = Menu.model_validate(doc)
    except ValidationError as exc:
        raise MenuInvalid(
            [f"{'.'.join(str(p) for p in e['loc']) or 'menu'}: {e['msg']}" for e in exc.errors()]
        ) from exc
    errs = validate(menu, max_chars, audio_exists)
    if errs:
        raise MenuInvalid(errs)
    return menu
