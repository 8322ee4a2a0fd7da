"""`callpipe transcribe` on the files a PBX produces, and its errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.cli import main
from stt.normalise import wer


def test_ulaw_stereo_wav_json(
    tmp_path: Path,
    ulaw_stereo_wav: bytes,
    two_party: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = tmp_path / "call.wav"
    f.write_bytes(ulaw_stereo_wav)
    assert (
        main(
            [
                "transcribe",
                str(f),
                "--channels",
                "agent,customer",
                "--language",
                "en",
                "--format",
                "json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    legs = {
        leg: " ".join(u["text"] for u in doc["utterances"] if u["leg"] == leg)
        for leg in ("agent", "customer")
    }
    assert wer(two_party["agent_text"], legs["agent"]) < 0.15
    assert wer(two_party["customer_text"], legs["customer"]) < 0.15
    assert all(u["words"] for u in doc["utterances"])


def test_mp3_mono_vtt(
    tmp_path: Path, two_party: dict[str, Any], encode: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = two_party["channels"][0] + two_party["channels"][1]
    f = tmp_path / "call.mp3"
    f.write_bytes(encode([mixed], 8000, "mp3", "mp3"))
    assert main(["transcribe", str(f), "--format", "vtt", "--model", "base"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WEBVTT") and "<v mono>" in out
    text = " ".join(line.split(">", 1)[1] for line in out.splitlines() if line.startswith("<v "))
    assert wer(two_party["spoken_text"], text) < 0.15


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "no such file"),
        (b"", [], "empty file"),
        (b"\x13\x37" * 500, [], "not a readable audio file"),
        ("mono", ["--channels", "agent,customer"], "channel 1 (customer) named"),
        ("mono", ["--model", "/nonexistent/model"], "does not exist"),
    ],
)
def test_errors_exit_2(
    tmp_path: Path,
    encode: Any,
    content: Any,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = tmp_path / "in.wav"
    if content == "mono":
        content = encode([np.zeros(8000, np.float32)], 8000, "pcm_mulaw", "wav")
    if content is not None:
        f.write_bytes(content)
    assert main(["transcribe", str(f), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callpipe: error:") and message in err


def test_console_script_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    exe = Path(sys.executable).parent / "callpipe"
    r = subprocess.run(
        [str(exe), "transcribe", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "not a readable audio file" in r.stderr
