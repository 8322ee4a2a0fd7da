"""The house's layers, held by the code itself (docs/architecture.md, "Layers"): the ground
(pipeline/, models/) imports no feature package, no feature imports the wiring layer
(app/), and no project module is imported inside a function, where a loop could hide."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIRING = "app"
FEATURES = ("stt", "tts", "prompter", "robot", "recordings", "sim")
GROUND = ("pipeline", "models")
PROJECT = (WIRING, *FEATURES, *GROUND)


def modules(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def imported(path: Path, *, inside_functions: bool = False) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of each import of a file, at module level or inside
    functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if (id(node) in in_function) != inside_functions:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split(".")[0]


def offenders(packages: tuple[str, ...], banned: tuple[str, ...], **kw: bool) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in modules(*packages)
        for line, top in imported(path, **kw)
        if top in banned
    ]


def test_the_ground_imports_no_feature_package_and_not_the_wiring() -> None:
    assert offenders(GROUND, (WIRING, *FEATURES)) == []
    assert offenders(("models",), ("pipeline",)) == []


def test_features_do_not_import_the_wiring_layer() -> None:
    assert offenders(FEATURES, (WIRING,)) == []


def test_no_project_module_is_imported_inside_a_function() -> None:
    assert offenders(PROJECT, PROJECT, inside_functions=True) == []


def test_the_check_sees_an_import_where_it_is(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import stt.batch\nfrom pipeline import ids\n\n\n"
        "def f() -> None:\n    from recordings.index import index_of\n",
        encoding="utf-8",
    )
    assert list(imported(sample)) == [(1, "stt"), (2, "pipeline")]
    assert list(imported(sample, inside_functions=True)) == [(6, "recordings")]
