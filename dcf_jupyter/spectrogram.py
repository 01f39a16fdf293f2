"""One picture of a spectrogram, drawn alike by `functions/stft`'s PNG and by the notebook's `plot_spectrogram`.

Time runs across; frequency runs up a log axis from 50 Hz (or the second bin above 0 Hz, when that is higher) to
the Nyquist frequency, with ticks in Hz and kHz (100 Hz, 200 Hz, 500 Hz, 1 kHz ... and the Nyquist frequency
itself); colours span the 80 dB below the loudest point. Only frames whose window lies wholly inside the audio are
drawn: the first and last reach into the zero padding the transform adds at both ends, where a sound that starts
at full volume becomes a click across every frequency (the numbers keep those frames, as scipy's do).

Needs numpy and matplotlib (a function's requirements.txt brings them, Pillow for `render_png`). It imports
nothing else of dcf_jupyter, so a function can use it wherever its worker runs: every image holds the worker's
source.
"""

from __future__ import annotations

import io
from typing import Any

DB_RANGE = 80.0  # dB drawn below the loudest point; quieter is black
LOWEST_HZ = 50.0
FIGURE_SIZE = (10.0, 4.5)  # inches, at 100 dpi
COLOUR_MAP = "magma"
LEVEL_LABEL = "level (dB re full scale)"


def hz_label(hz: float) -> str:
    """'100 Hz', '1 kHz', '22.05 kHz'."""
    return f"{hz:g} Hz" if hz < 1000 else f"{round(hz / 1000, 2):g} kHz"


def frequency_ticks(low: float, nyquist: float) -> list[float]:
    """1-2-5 steps from `low` up to `nyquist`, and `nyquist` itself when the last step is well below it."""
    import math

    ticks = [step * 10.0 ** decade for decade in range(math.floor(math.log10(max(low, 1.0))), 6)
             for step in (1, 2, 5)]
    kept = [tick for tick in ticks if low <= tick <= nyquist]
    if not kept or kept[-1] * 1.3 < nyquist:
        kept.append(nyquist)
    return kept


def whole_frames(times: Any, duration: float | None, window_s: float | None) -> Any:
    """Indices of the frames whose window lies inside [0, duration]; all of them when that is unknown or when
    fewer than two would be left (a clip shorter than two windows)."""
    import numpy as np

    every = np.arange(len(times))
    if duration is None or window_s is None:
        return every
    half = window_s / 2
    inside = every[(times - half >= -1e-9) & (times + half <= duration + 1e-9)]
    return inside if len(inside) >= 2 else every


def display_grid(freqs: Any, db: Any, low: float, rows: int = 400, columns: int = 1200) -> tuple[Any, Any]:
    """db resampled for drawing: `rows` log-spaced frequency bands from `low` to the top bin (each its loudest bin,
    so narrow peaks stay visible) and at most `columns` time columns (each its group's loudest frame).
    Returns (band edges in Hz, resampled dB [band, column])."""
    import numpy as np

    edges = np.geomspace(low, freqs[-1], rows + 1)
    lo = np.clip(np.searchsorted(freqs, edges[:-1]), 1, len(freqs) - 1)
    hi = np.maximum(np.searchsorted(freqs, edges[1:]), lo + 1)
    bins = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])  # one small range per row
    starts = np.concatenate(([0], np.cumsum(hi - lo)[:-1]))
    banded = np.maximum.reduceat(db[bins], starts, axis=0)
    group = max(1, -(-banded.shape[1] // columns))
    if group > 1:
        banded = np.maximum.reduceat(banded, np.arange(0, banded.shape[1], group), axis=1)
    return edges, banded


def draw(figure: Any, freqs: Any, times: Any, db: Any, *, title: str = "", duration: float | None = None,
         window_s: float | None = None) -> Any:
    """Draw the spectrogram (db [frequency, time] in dB re full scale) on a matplotlib Figure; returns its axes."""
    import numpy as np

    freqs, times, db = np.asarray(freqs, float), np.asarray(times, float), np.asarray(db, float)
    if len(freqs) < 3:
        raise ValueError(f"a spectrogram needs at least 3 frequency bins to draw, not {len(freqs)}")
    frames = whole_frames(times, duration, window_s)
    times, db = times[frames], db[:, frames]
    low = max(LOWEST_HZ, float(freqs[2]))  # bin 1 is a smear of 0 Hz; a log axis has no 0 Hz at all
    edges, grid = display_grid(freqs, db, low)
    top = float(db[freqs >= low].max())
    axes = figure.add_subplot()
    step = float(times[1] - times[0]) if len(times) > 1 else (window_s or 1.0)
    # Rows are log-spaced, so the image lies on a linear axis of log10(Hz), labelled in Hz.
    image = axes.imshow(grid, origin="lower", aspect="auto", cmap=COLOUR_MAP, interpolation="nearest",
                        extent=(float(times[0]) - step / 2, float(times[-1]) + step / 2,
                                float(np.log10(edges[0])), float(np.log10(edges[-1]))),
                        vmin=top - DB_RANGE, vmax=top)
    ticks = frequency_ticks(low, float(freqs[-1]))
    axes.set_yticks(np.log10(ticks), [hz_label(tick) for tick in ticks])
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (log scale)")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, label=LEVEL_LABEL, fraction=0.05, pad=0.02)
    figure.subplots_adjust(left=0.1, right=0.95, bottom=0.12, top=0.9)
    return axes


def figure_of(freqs: Any, times: Any, db: Any, **options: Any) -> Any:
    """A new matplotlib Figure (no pyplot state, so repeated calls keep no memory) with the spectrogram drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE, dpi=100)
    FigureCanvasAgg(figure)
    draw(figure, freqs, times, db, **options)
    return figure


def render_png(freqs: Any, times: Any, db: Any, **options: Any) -> bytes:
    """The spectrogram as PNG bytes (`options` as draw's)."""
    from PIL import Image

    canvas = figure_of(freqs, times, db, **options).canvas
    canvas.draw()  # once; savefig would lay out and draw again
    width, height = canvas.get_width_height()
    buffer = io.BytesIO()
    Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba()).convert("RGB").save(buffer, "PNG",
                                                                                       compress_level=1)
    return buffer.getvalue()
