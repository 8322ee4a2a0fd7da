"""`callpipe transcribe FILE`: a recording to a transcript on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from models.errors import WeightsNotFound
from models.speaker import load_speaker_encoder
from models.whisper import load_whisper
from pipeline.config import Settings
from pipeline.errors import CliError
from pipeline.events import Utterance
from pipeline.media.audio_file import AudioError, load_audio
from recordings.call_stats import call_statistics
from recordings.transcripts import to_document, to_srt, to_txt, to_vtt
from stt.batch import (
    ChannelMismatch,
    info_dict,
    parse_channels,
    transcribe_recording,
    with_progress,
)
from stt.speakers import label_speakers
from stt.transcriber import Transcriber, options_from


def register(sub: Any) -> None:
    """Add `transcribe`."""
    p = sub.add_parser("transcribe", help="transcribe a recording file to stdout")
    p.add_argument("file", type=Path)
    p.add_argument(
        "--channels",
        default=None,
        help="'mono' or legs per channel, e.g. agent,customer (default: agent,customer "
        "for two-channel files, mono otherwise)",
    )
    p.add_argument("--language", default=None, help="ISO code (default: detect)")
    p.add_argument("--model", default=None, help="base, small or a model folder (default base)")
    p.add_argument("--format", choices=("json", "vtt", "srt", "txt"), default="txt")
    p.add_argument(
        "--one-speaker",
        action="store_true",
        help="keep a mono recording as one speaker (default: its two voices are told apart"
        " and named agent and customer)",
    )
    p.add_argument(
        "--direction",
        choices=("inbound", "outbound", "internal"),
        default="inbound",
        help="who speaks first on a mono recording: the agent (inbound, internal) or the"
        " customer (outbound)",
    )
    p.set_defaults(func=cmd_transcribe)


def _split(utterances: list[Utterance], audio: Any, direction: str) -> list[Utterance]:
    """The two voices of a mono recording, or one speaker (said on stderr) without the
    encoder's weights."""
    try:
        encoder = load_speaker_encoder()
    except WeightsNotFound as exc:
        sys.stderr.write(f"callpipe: one speaker kept: {exc}\n")
        return utterances
    return label_speakers(utterances, audio, direction, encoder)


@contextmanager
def _progress_bar(name: str, duration: float) -> Iterator[Callable[[float], None]]:
    """A bar on stderr in seconds of the call, when stderr is a terminal (a pipe or a log
    gets no bar: the transcript on stdout stays clean)."""
    if not sys.stderr.isatty():
        yield lambda _: None
        return
    total = round(duration, 1)
    with tqdm(total=total, unit="s", desc=name, file=sys.stderr, leave=False) as bar:

        def report(done: float) -> None:
            bar.update(round(done * total, 1) - bar.n)

        yield report


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Decode, transcribe each channel as its leg, print."""
    settings = Settings()
    if not args.file.is_file():
        raise CliError(f"{args.file}: no such file")
    try:
        audio = load_audio(args.file)
    except AudioError as exc:
        raise CliError(f"{args.file}: {exc}") from None
    if audio.duration <= 0:
        raise CliError(f"{args.file}: the recording holds no audio")
    spec = args.channels or ("agent,customer" if len(audio.channels) == 2 else "mono")
    try:
        channels = parse_channels(spec)
    except ChannelMismatch as exc:
        raise CliError(str(exc)) from None
    model_name = args.model or settings.stt.model
    st = settings.stt
    try:
        model = load_whisper(
            model_name, settings.model_cache, st.compute_type, st.cpu_threads, st.workers
        )
    except WeightsNotFound as exc:
        raise CliError(str(exc)) from None
    transcriber = Transcriber(model, options_from(st), model_name=model_name, workers=st.workers)
    call_id = "".join(c if c.isalnum() or c in "._-" else "_" for c in args.file.stem) or "call"
    try:
        utter_iter, info = transcribe_recording(
            transcriber, audio, channels, "cli", call_id, st.language_for("cli", args.language)
        )
        with _progress_bar(args.file.name, info.duration) as report:
            utterances = list(with_progress(utter_iter, info.duration, report))
        if channels == "mono" and not args.one_speaker:
            utterances = _split(utterances, audio.mono(), args.direction)
    except ChannelMismatch as exc:
        raise CliError(str(exc)) from None
    if args.format == "txt":
        sys.stdout.write(to_txt(utterances))
    elif args.format == "vtt":
        sys.stdout.write(to_vtt(utterances))
    elif args.format == "srt":
        sys.stdout.write(to_srt(utterances))
    else:
        stats = call_statistics(utterances, info.duration)
        doc = to_document("cli", call_id, utterances, info_dict(info), "batch", statistics=stats)
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    return 0
