"""`callpipe transcribe` on the files a PBX produces, and its errors (exit 2)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
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
    # One Piper voice on both legs: kept as one speaker here (telling voices apart is
    # tests/stt/test_speakers.py's; on one voice it is not decided by this file's needs).
    argv = ["transcribe", str(f), "--format", "vtt", "--model", "base", "--one-speaker"]
    assert main(argv) == 0
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


def test_a_terminal_sees_a_progress_bar_and_stdout_only_the_transcript(
    tmp_path: Path, ulaw_stereo_wav: bytes
) -> None:
    """On a terminal (a pty with a window size, as a shell gives), stderr shows the bar in
    seconds of the call; the transcript on stdout is the same as without one."""
    f = tmp_path / "call.wav"
    f.write_bytes(ulaw_stereo_wav)
    command = [sys.executable, "-m", "app.cli", "transcribe", str(f), "--language", "en"]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert plain.stderr == ""  # not a terminal: no bar
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait(timeout=300) == 0
    os.close(master)
    bar = shown.decode(errors="replace")
    assert "call.wav:" in bar and "100%" not in bar.split("\r")[0]
    assert re.search(r"\d+(\.\d)?/\d+\.\d \[", bar), bar[-300:]  # seconds done / total
    assert (tmp_path / "out.txt").read_text() == plain.stdout
