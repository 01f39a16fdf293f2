"""Spectrograms inline: a .wav file or audio recorded in the browser, through the STFT function, plotted."""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..client import Client
from ..notebook._display import image_bytes
from ..notebook._session import client_for
from ._camera import STATIC

NPZ_MAGIC = b"PK\x03\x04"
DB_RANGE = 100.0  # dB shown below the loudest bin, as the function's own PNG does


@dataclass
class Spectrum:
    """A spectrogram as numbers (what `stft-data` returns); displays itself as a plot."""

    freqs: Any  # Hz, one per row of db
    times: Any  # s, one per column of db
    db: Any  # amplitude in dB, shape (len(freqs), len(times))
    title: str = ""

    @classmethod
    def from_npz(cls, data: bytes, title: str = "") -> Spectrum:
        """Read the `.npz` reply of `stft-data`."""
        import numpy as np

        with np.load(io.BytesIO(data)) as arrays:
            return cls(arrays["freqs"], arrays["times"], arrays["db"], title)

    @property
    def peak_hz(self) -> float:
        """The frequency with the most energy on average (0 Hz excluded)."""
        import numpy as np

        mean_db = self.db[1:].mean(axis=1) if len(self.freqs) > 1 else self.db.mean(axis=1)
        return float(self.freqs[1:][int(np.argmax(mean_db))]) if len(self.freqs) > 1 else float(self.freqs[0])

    def figure(self) -> Any:
        """A matplotlib Figure: time on x, frequency on a log y axis, a dB colorbar (no pyplot state)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(9, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        rows = slice(1, None) if len(self.freqs) > 1 else slice(None)  # a log axis has no 0 Hz
        top = float(self.db.max())
        mesh = axes.pcolormesh(self.times, self.freqs[rows], self.db[rows], shading="nearest", cmap="magma",
                               vmin=top - DB_RANGE, vmax=top)
        axes.set_yscale("log")
        axes.set_xlabel("time (s)")
        axes.set_ylabel("frequency (Hz)")
        if self.title:
            axes.set_title(self.title)
        figure.colorbar(mesh, ax=axes, label="amplitude (dB)")
        figure.tight_layout()
        return figure

    def png(self) -> bytes:
        """The plot as PNG bytes."""
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()


def _wav_bytes(wav: str | Path | bytes) -> bytes:
    if isinstance(wav, (bytes, bytearray, memoryview)):
        return bytes(wav)
    path = Path(wav)
    if not path.is_file():
        raise FileNotFoundError(f"no .wav file at {path}")
    return path.read_bytes()


def analyze(wav: str | Path | bytes, *, function: str = "stft-data", client: Client | None = None,
            title: str = "") -> Any:
    """Send a .wav (path or bytes) to the STFT function: a Spectrum for `stft-data`, an image for `stft`."""
    raw = (client or client_for()).call_reply(function, _wav_bytes(wav)).data
    if raw.startswith(NPZ_MAGIC):
        return Spectrum.from_npz(raw, title)
    found = image_bytes(raw)
    if found:
        from IPython.display import Image

        return Image(data=found[1], format=found[0].split("/")[1])
    raise ValueError(f"{function!r} returned neither .npz numbers nor an image ({len(raw)} bytes)")


def plot_spectrogram(wav: str | Path | bytes, *, function: str = "stft-data", gateway: str | None = None) -> Any:
    """The spectrogram of a .wav file (path or bytes), computed by `function`, to display inline."""
    title = Path(wav).name if isinstance(wav, (str, Path)) else ""
    return analyze(wav, function=function, client=client_for(gateway), title=title)


class Spectrogram(anywidget.AnyWidget):
    """Record audio in the browser (or pass a .wav) and see its spectrogram from `function` inline."""

    _esm = STATIC / "spectrogram.js"
    _css = STATIC / "stream.css"

    function = traitlets.Unicode("stft-data").tag(sync=True)
    seconds = traitlets.Float(3.0).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    plots = traitlets.Int(0).tag(sync=True)
    image = traitlets.Bytes(b"").tag(sync=True)  # the latest plot, sent as a binary buffer
    image_mime = traitlets.Unicode("image/png").tag(sync=True)

    def __init__(self, function: str = "stft-data", *, seconds: float = 3.0, gateway: str | None = None,
                 client: Client | None = None, **kwargs: Any) -> None:
        super().__init__(function=function, seconds=seconds, **kwargs)
        self._gateway, self._client = gateway, client
        self.last: Any = None  # the latest Spectrum (or image)
        self.last_wav: bytes = b""
        self.on_msg(self._on_message)

    def analyze(self, wav: str | Path | bytes, title: str = "") -> Any:
        """Compute and show the spectrogram of a .wav file (path or bytes); returns it too."""
        data = _wav_bytes(wav)
        title = title or (Path(wav).name if isinstance(wav, (str, Path)) else "")
        return self._compute(data, title)

    def _on_message(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        if content.get("type") == "audio" and buffers:
            data = bytes(buffers[0])
            threading.Thread(target=self._compute_quietly, args=(data, f"the {self.seconds:g} s recording"),
                             daemon=True).start()

    def _compute_quietly(self, data: bytes, title: str) -> None:
        with contextlib.suppress(Exception):  # _compute already showed it in the widget
            self._compute(data, title)

    def _compute(self, data: bytes, title: str) -> Any:
        self.last_wav = data
        self.status, self.error = f"computing the spectrogram of {len(data) / 1024:.0f} KiB…", ""
        try:
            if self._client is None:
                self._client = client_for(self._gateway)
            result = analyze(data, function=self.function, client=self._client, title=title)
        except Exception as exc:
            self.status, self.error = "", f"{type(exc).__name__}: {exc}"
            raise
        self.last = result
        png = result.png() if isinstance(result, Spectrum) else result.data
        mime = "image/png" if isinstance(result, Spectrum) else f"image/{result.format}"
        self.image_mime, self.image = mime, png
        summary = f": loudest at {result.peak_hz:.0f} Hz" if isinstance(result, Spectrum) else ""
        self.status = f"{title or 'audio'}{summary}"
        self.plots += 1
        return result
