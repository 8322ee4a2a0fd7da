"""Resemblyzer's pretrained speaker encoder (GE2E: 40 mel bands in, a 3-layer LSTM, a
256-value voice embedding out), run in numpy.

The weights come from the `resemblyzer` PyPI package (0.1.4, `pretrained.pt`, 17 MB),
installed without its dependencies: the package imports torch (with CUDA, gigabytes) only
to run this small network, which numpy runs at about real time / 100 on one core. The
checkpoint is torch's legacy serialisation: a pickle whose tensors name storages that
follow it as raw little-endian float32, read here without torch."""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from models.errors import WeightsNotFound

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # the 1.6 s windows the encoder was trained on
TARGET_DBFS = -30.0  # resemblyzer raises quiet audio to this before the mel bands


def weights_path() -> Path:
    """Where the resemblyzer package keeps `pretrained.pt`."""
    try:
        path = Path(str(distribution("resemblyzer").locate_file("resemblyzer/pretrained.pt")))
    except PackageNotFoundError:
        raise WeightsNotFound(
            "the speaker encoder comes from the 'resemblyzer' package: "
            "pip install --no-deps resemblyzer==0.1.4 (make run and make test do it)"
        ) from None
    if not path.is_file():
        raise WeightsNotFound(f"resemblyzer is installed but {path} is missing")
    return path


class _Storage:
    def __init__(self, name: str) -> None:
        self.name = name


class _Checkpoint(pickle.Unpickler):
    """Torch's legacy pickle: tensors become (storage key, offset, shape, strides)."""

    def __init__(self, f: BinaryIO) -> None:
        super().__init__(f)
        self.storages: dict[str, str] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *_: (storage, offset, size, stride)
        if module == "torch" and name.endswith("Storage"):
            return _Storage(name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the checkpoint")

    def persistent_load(self, pid: Any) -> str:
        _, storage_type, key, _, _, _ = pid
        self.storages[key] = storage_type.name
        return str(key)


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """The encoder's tensors by their torch names, as float32 arrays."""
    with path.open("rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)  # noqa: S301 (the package's own file, read without running code)
        reader = _Checkpoint(f)
        checkpoint = reader.load()
        keys = pickle.load(f)  # noqa: S301
        data: dict[str, np.ndarray] = {}
        for key in keys:
            if reader.storages[key] != "FloatStorage":
                raise WeightsNotFound(f"{path}: unexpected storage {reader.storages[key]}")
            (count,) = struct.unpack("<q", f.read(8))
            data[key] = np.frombuffer(f.read(count * 4), dtype="<f4")
    weights = {}
    for name, (key, offset, size, stride) in checkpoint["model_state"].items():
        flat = data[key][offset:]
        weights[name] = np.lib.stride_tricks.as_strided(
            flat, shape=size, strides=tuple(s * 4 for s in stride)
        ).astype(np.float32)
    return weights


def _mel_filters() -> np.ndarray:
    """librosa's default mel filter bank (Slaney scale and area norm), as resemblyzer used."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        mel = f / (200.0 / 3)
        log_part = f >= 1000.0
        mel[log_part] = 15.0 + np.log(f[log_part] / 1000.0) / (np.log(6.4) / 27.0)
        return mel

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        hz = m * (200.0 / 3)
        log_part = m >= 15.0
        hz[log_part] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log_part] - 15.0))
        return hz

    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(np.array([0.0]))[0], hz_to_mel(np.array([8000.0]))[0], N_MELS + 2)
    )
    gaps = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / gaps[:-1, None]
    upper = ramps[2:] / gaps[1:, None]
    bank = np.maximum(0, np.minimum(lower, upper))
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return bank.astype(np.float32)


@dataclass
class SpeakerEncoder:
    """Voice embeddings of 16 kHz speech."""

    weights: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        self._mel = _mel_filters()
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)

    def mel_frames(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 40) mel power frames every 10 ms, of the whole audio raised to
        -30 dBFS when quieter (what the encoder saw in training)."""
        x = audio.astype(np.float32)
        rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
        if rms > 0:
            gain = 10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20)
            x = x * max(1.0, gain)
        x = np.pad(x, N_FFT // 2)  # librosa's centred frames, zero padded
        n = 1 + (len(x) - N_FFT) // HOP
        frames = np.lib.stride_tricks.as_strided(
            x, shape=(n, N_FFT), strides=(x.strides[0] * HOP, x.strides[0])
        )
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        return (power @ self._mel.T).astype(np.float32)

    def embed(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) mel windows -> (batch, 256) L2-normed embeddings."""
        w = self.weights
        x = mels.astype(np.float32)
        batch, steps, _ = x.shape
        for layer in range(3):
            w_ih, w_hh = w[f"lstm.weight_ih_l{layer}"], w[f"lstm.weight_hh_l{layer}"]
            bias = w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]
            inputs = x @ w_ih.T + bias  # every step's input part at once
            h = np.zeros((batch, 256), np.float32)
            c = np.zeros((batch, 256), np.float32)
            out = np.empty((batch, steps, 256), np.float32)
            for t in range(steps):
                gates = inputs[:, t] + h @ w_hh.T
                i, f, g, o = np.split(gates, 4, axis=1)  # torch's gate order
                c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                h = _sigmoid(o) * np.tanh(c)
                out[:, t] = h
            x = out
        raw = np.maximum(0, h @ w["linear.weight"].T + w["linear.bias"])
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norm, 1e-9)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


def load_speaker_encoder() -> SpeakerEncoder:
    """The encoder with resemblyzer's weights (WeightsNotFound when not installed)."""
    return SpeakerEncoder(load_weights(weights_path()))
