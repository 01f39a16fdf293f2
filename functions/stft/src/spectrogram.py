"""Spectrograms of WAV audio: read any WAV, a vectorised STFT, dB magnitudes, and the numbers as .npz.

The transform uses scipy.signal.stft's framing and scaling (zero-padded boundaries,
padded last segment, spectrum scaling), so its magnitudes match scipy's; framing is
a strided view and the FFT runs over all frames at once (no Python loop over frames
or bins). The picture is drawn by dcf_jupyter.spectrogram, the code the notebook's
plot_spectrogram draws with, so both look the same.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft
from scipy.io import wavfile
from scipy.signal import get_window

FRAME = 1024
OVERLAP = 0.5
DB_FLOOR = -160.0  # dB re full scale: where silence is drawn


def read_wav(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, mono float64 samples in [-1, 1]) from WAV bytes; ValueError for anything unusable."""
    if not data:
        raise ValueError("empty request: send the bytes of a .wav file")
    if data[:4] not in (b"RIFF", b"RIFX", b"RF64") or data[8:12] != b"WAVE":
        raise ValueError(f"not a WAV file (it starts with {data[:12]!r}, not a RIFF/WAVE header)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", wavfile.WavFileWarning)  # a truncated file is an error, not a warning
            rate, samples = wavfile.read(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - scipy's parser fails in many ways on broken files
        raise ValueError(f"unreadable or truncated WAV file: {type(exc).__name__}: {exc}") from None
    if rate <= 0:
        raise ValueError(f"the WAV file says its sample rate is {rate} Hz")
    kind = samples.dtype
    if kind == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        x = (samples.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(kind, np.integer):
        x = samples.astype(np.float64) / float(np.iinfo(kind).max + 1)
    elif np.issubdtype(kind, np.floating):
        x = samples.astype(np.float64)
    else:
        raise ValueError(f"unsupported WAV sample type {kind}")
    if x.ndim == 2:
        x = x.mean(axis=1)  # mix channels down to mono
    if x.size == 0:
        raise ValueError("the WAV file holds no samples")
    return int(rate), x


def stft(
    x: np.ndarray, rate: int, frame: int = FRAME, overlap: float = OVERLAP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies Hz, times s, complex STFT [frequency, time]) with a periodic Hann window."""
    hop = frame - int(frame * overlap)
    window = get_window("hann", frame)
    half = frame // 2
    padded_len = len(x) + 2 * half
    extra = (-(padded_len - frame) % hop) % frame
    padded = np.zeros(padded_len + extra)
    padded[half:half + len(x)] = x
    frames = sliding_window_view(padded, frame)[::hop]
    spectrum = fft.rfft(frames * window, axis=-1) / window.sum()
    freqs = fft.rfftfreq(frame, 1.0 / rate)
    times = np.arange(frames.shape[0]) * (hop / rate)
    return freqs, times, spectrum.T


def spectrogram_db(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies Hz, times s, magnitude dB re full scale [frequency, time])."""
    freqs, times, spectrum = stft(x, rate)
    magnitude = np.abs(spectrum)
    db = 20.0 * np.log10(np.maximum(magnitude, 10.0 ** (DB_FLOOR / 20.0)))
    return freqs, times, db


def to_npz(freqs: np.ndarray, times: np.ndarray, db: np.ndarray, duration: float, window: float) -> bytes:
    """The numbers as .npz bytes: np.load(io.BytesIO(reply)) gives freqs, times and db, and the audio's duration
    and the window's length in seconds (which frames reach past the audio's ends)."""
    buffer = io.BytesIO()
    np.savez(buffer, freqs=freqs.astype(np.float32), times=times.astype(np.float32), db=db.astype(np.float32),
             duration=np.float64(duration), window=np.float64(window))
    return buffer.getvalue()
