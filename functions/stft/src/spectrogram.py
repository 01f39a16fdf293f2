"""Spectrograms of WAV audio: read any WAV, a vectorised STFT, dB magnitudes, and a PNG picture.

The transform uses scipy.signal.stft's framing and scaling (zero-padded boundaries,
padded last segment, spectrum scaling), so its magnitudes match scipy's; framing is
a strided view and the FFT runs over all frames at once (no Python loop over frames
or bins). The picture is drawn on a fresh matplotlib Figure (no pyplot state), so
repeated calls do not accumulate memory.
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


def display_grid(freqs: np.ndarray, db: np.ndarray, rows: int = 400,
                 columns: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """db resampled for drawing: `rows` log-spaced frequency bands (each its loudest bin, so narrow
    peaks stay visible) and at most `columns` time columns (each its group's loudest frame).
    Returns (band edges in Hz, resampled dB [band, column])."""
    edges = np.geomspace(freqs[1], freqs[-1], rows + 1)
    lo = np.clip(np.searchsorted(freqs, edges[:-1]), 1, len(freqs) - 1)
    hi = np.maximum(np.searchsorted(freqs, edges[1:]), lo + 1)
    bins = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])  # one small range per display row
    starts = np.concatenate(([0], np.cumsum(hi - lo)[:-1]))
    banded = np.maximum.reduceat(db[bins], starts, axis=0)
    group = max(1, -(-banded.shape[1] // columns))
    if group > 1:
        banded = np.maximum.reduceat(banded, np.arange(0, banded.shape[1], group), axis=1)
    return edges, banded


def render_png(freqs: np.ndarray, times: np.ndarray, db: np.ndarray, title: str = "") -> bytes:
    """The spectrogram as a PNG: time on x, frequency on a log-scaled y axis, a dB colorbar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    edges, grid = display_grid(freqs, db)
    figure = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    top = float(db.max())
    # Rows are log-spaced, so the image lies on a linear axis of log10(Hz), labelled in Hz.
    image = axes.imshow(grid, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                        extent=(float(times[0]), float(times[-1]) if len(times) > 1 else 1.0,
                                float(np.log10(edges[0])), float(np.log10(edges[-1]))),
                        vmin=max(top - 100.0, DB_FLOOR), vmax=top)
    decades = np.arange(np.ceil(np.log10(edges[0])), np.floor(np.log10(edges[-1])) + 1)
    axes.set_yticks(decades, [f"{10 ** d:g}" for d in decades])
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (Hz, log scale)")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, label="amplitude (dB re full scale)", fraction=0.05, pad=0.02)
    figure.subplots_adjust(left=0.08, right=0.95, bottom=0.11, top=0.92)
    canvas = figure.canvas
    canvas.draw()  # once; savefig would lay out and draw again
    from PIL import Image

    width, height = canvas.get_width_height()
    buffer = io.BytesIO()
    Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba()).convert("RGB").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def to_npz(freqs: np.ndarray, times: np.ndarray, db: np.ndarray) -> bytes:
    """The numbers as .npz bytes: np.load(io.BytesIO(reply)) gives freqs, times and db."""
    buffer = io.BytesIO()
    np.savez(buffer, freqs=freqs.astype(np.float32), times=times.astype(np.float32), db=db.astype(np.float32))
    return buffer.getvalue()
