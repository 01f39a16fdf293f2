"""WAV files made at test time, in every sample format the STFT function accepts."""

from __future__ import annotations

import io

import numpy as np
from scipy.io import wavfile


def tone(seconds: float = 0.5, rate: int = 16000, freq: float = 440.0, stereo: bool = False) -> np.ndarray:
    """A sine at `freq` Hz, amplitude 0.5 (two identical channels when stereo)."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x, x], axis=1) if stereo else x


def wav_bytes(samples: np.ndarray, rate: int, kind: str) -> bytes:
    """`samples` in [-1, 1] written as a WAV of `kind`: uint8, int16, int32, float32 or float64."""
    if kind == "uint8":
        data = np.round(samples * 127 + 128).astype(np.uint8)
    elif kind in ("int16", "int32"):
        info = np.iinfo(kind)
        data = np.round(samples * info.max).astype(kind)
    else:
        data = samples.astype(kind)
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, data)
    return buffer.getvalue()
