"""Who said what on a mono (mixed) recording: each utterance's voice embedded with the
speaker encoder (models/speaker.py), the voices split in two, and the two named agent and
customer by who speaks first.

Utterances come cut at Silero's pauses (stt/transcriber.py), and in a phone call the two
parties take turns with a pause between them, so an utterance is one voice: it is the unit
clustered. The two voices are told apart by a weighted 2-means on cosine similarity; when
their centres are as alike as one voice's utterances are, the recording is one speaker and
stays `mono`. Who answers speaks first: the agent on an inbound or internal call, the
customer on an outbound one (they pick up)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from models.errors import WeightsNotFound
from models.speaker import HOP, PARTIAL_FRAMES, SpeakerEncoder, load_speaker_encoder
from pipeline.events import Utterance, utterance_id
from pipeline.media import SAMPLE_RATE
from pipeline.services import Services

log = logging.getLogger(__name__)

# Centres more alike than this are one voice. On G.711 calls (bench/diarization.py) the
# centres of two voices measured 0.62-0.83 (two espeak-ng voices are the closest), and
# the two halves 2-means makes of one voice 0.88-0.95 (Piper, or the real French voice, on
# both legs of a call of 15-100 utterances).
SAME_VOICE = 0.86
# Two voices: a side's utterances are this much more alike (mean cosine) than utterances of
# the two sides. Measured 0.14-0.32 for two voices, 0.02-0.09 for one voice split in two
# (a short call of one Piper voice can pass the two tests above and fail this one).
MIN_SEPARATION = 0.10
# A second voice holds at least this share of the speech: one voice split in two on a short
# call may leave its centres further apart (0.80 on 29 utterances) but one outlier alone
# on the other side (1 utterance of 29).
MIN_SHARE = 0.05
# A second voice is heard in at least this many of the utterances that shape the voices: one
# utterance alone on a side is an outlier of one voice (Piper on both legs of a short call
# left one 1 s utterance on its own side with its centre 0.83-0.85 from the other, 1 run in
# 20, and a separation that passed 0.10 now and then), not a party to the call.
MIN_UTTERANCES = 2
MIN_FRAMES = 20  # 0.2 s: shorter than this, an utterance takes its neighbour's voice
# Only utterances this long shape the two voices (a word or two says little of a voice);
# the shorter ones then take the nearer voice.
MIN_CLUSTER_S = 0.8
_ITERATIONS = 20


def utterance_embeddings(
    encoder: SpeakerEncoder, audio: np.ndarray, utterances: Sequence[Utterance]
) -> list[np.ndarray | None]:
    """One embedding per utterance (the mean of its 1.6 s windows, half overlapping), or
    None for one too short to say anything of its voice. Windows of the same length go
    through the encoder together: its time steps are a Python loop, its batch is not."""
    mel = encoder.mel_frames(audio)
    frames_per_s = SAMPLE_RATE / HOP
    owners: dict[int, list[int]] = {}  # window length -> utterance of each window
    windows: dict[int, list[np.ndarray]] = {}
    for i, u in enumerate(utterances):
        first, last = int(u.start * frames_per_s), int(np.ceil(u.end * frames_per_s))
        span = mel[first:last]
        if len(span) < MIN_FRAMES:
            continue
        if len(span) <= PARTIAL_FRAMES:
            pieces = [span]
        else:
            starts = range(0, len(span) - PARTIAL_FRAMES + 1, PARTIAL_FRAMES // 2)
            pieces = [span[s : s + PARTIAL_FRAMES] for s in starts]
        for piece in pieces:
            owners.setdefault(len(piece), []).append(i)
            windows.setdefault(len(piece), []).append(piece)
    sums: dict[int, np.ndarray] = {}
    for length, batch in windows.items():
        for i, e in zip(owners[length], encoder.embed(np.stack(batch)), strict=True):
            sums[i] = sums[i] + e if i in sums else e
    return [
        sums[i] / np.linalg.norm(sums[i]) if i in sums else None for i in range(len(utterances))
    ]


def two_voices(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """0/1 per row of `embeddings` (L2-normed, weighted by seconds), or None when they
    are one voice."""
    shaping = weights >= MIN_CLUSTER_S
    if shaping.sum() < 2:
        shaping = np.ones(len(weights), dtype=bool)
    if shaping.sum() < 2:
        return None
    # Seeds: the longest utterance, and the long one least like it.
    a = int(np.argmax(weights))
    unlike = np.where(shaping, embeddings @ embeddings[a], np.inf)
    b = int(np.argmin(unlike))
    centres = embeddings[[a, b]].copy()
    labels: np.ndarray | None = None
    for _ in range(_ITERATIONS):
        new = np.argmax(embeddings @ centres.T, axis=1)
        if labels is not None and (new == labels).all():
            break
        labels = new
        for k in (0, 1):
            members = (labels == k) & shaping
            if not members.any():
                return None
            c = (embeddings[members] * weights[members, None]).sum(axis=0)
            centres[k] = c / np.linalg.norm(c)
    assert labels is not None  # the loop runs at least once
    if float(centres[0] @ centres[1]) > SAME_VOICE:
        return None
    sides = np.bincount(labels[shaping], minlength=2)
    if sides.min() < MIN_UTTERANCES:
        return None
    share = weights[shaping & (labels == 1)].sum() / weights[shaping].sum()
    if min(share, 1 - share) < MIN_SHARE:
        return None
    if _separation(embeddings[shaping], labels[shaping]) < MIN_SEPARATION:
        return None
    return labels


def _separation(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """How much more alike utterances of one side are than utterances of the two sides
    (mean cosine within minus mean cosine between)."""
    sims = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    within = sims[same & off_diagonal]
    between = sims[~same]
    if not len(within) or not len(between):
        return 0.0
    return float(within.mean() - between.mean())


def label_speakers(
    utterances: Sequence[Utterance],
    audio: np.ndarray,
    direction: str,
    encoder: SpeakerEncoder,
) -> list[Utterance]:
    """The utterances of a mono recording (16 kHz `audio`) with leg agent or customer, or
    unchanged (`mono`) when they are one voice."""
    if not utterances:
        return list(utterances)
    ordered = sorted(utterances, key=lambda u: u.start)
    embedded = utterance_embeddings(encoder, audio, ordered)
    known = [i for i, e in enumerate(embedded) if e is not None]
    if len(known) < 2:
        return list(utterances)
    vectors = np.stack([embedded[i] for i in known])  # type: ignore[misc]
    weights = np.array([ordered[i].end - ordered[i].start for i in known])
    labels = two_voices(vectors, weights)
    if labels is None:
        log.info("mono recording: one voice, kept as mono")
        return list(utterances)
    voice: list[int] = [-1] * len(ordered)
    for i, label in zip(known, labels, strict=True):
        voice[i] = int(label)
    for i, v in enumerate(voice):  # too short to embed: the voice heard just before
        if v < 0:
            voice[i] = next((voice[j] for j in range(i - 1, -1, -1) if voice[j] >= 0), labels[0])
    answers = "customer" if direction == "outbound" else "agent"
    other = "agent" if answers == "customer" else "customer"
    legs = {voice[0]: answers, 1 - voice[0]: other}
    out = []
    for u, v in zip(ordered, voice, strict=True):
        leg = legs[v]
        uid = utterance_id(u.call_id, leg, int(round(u.start * SAMPLE_RATE)))
        out.append(u.model_copy(update={"leg": leg, "utterance_id": uid}))
    return out


def split_mono(
    services: Services, utterances: list[Utterance], audio: np.ndarray, direction: str
) -> list[Utterance]:
    """`label_speakers` with the process's encoder when `stt.split_mono` is on; the
    utterances unchanged (and a warning) when the encoder's weights are missing."""
    if not services.settings.stt.split_mono:
        return utterances
    try:
        encoder = services.component("speaker_encoder", load_speaker_encoder)
    except WeightsNotFound as exc:
        services.metrics.inc("speaker_split_skipped_total", reason="no_weights")
        log.warning("mono recording kept as one speaker: %s", exc)
        return utterances
    return label_speakers(utterances, audio, direction, encoder)
