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
from ..spectrogram import figure_of, hz_label, render_png
from ._camera import STATIC

NPZ_MAGIC = b"PK\x03\x04"


@dataclass
class Spectrum:
    """A spectrogram as numbers (what `stft-data` returns); displays itself as the picture `stft` draws."""

    freqs: Any  # Hz, one per row of db
    times: Any  # s, one per column of db
    db: Any  # amplitude in dB re full scale, shape (len(freqs), len(times))
    title: str = ""
    duration: float | None = None  # s of audio, and of one window: which frames reach past the audio's ends
    window_s: float | None = None

    @classmethod
    def from_npz(cls, data: bytes, title: str = "") -> Spectrum:
        """Read the `.npz` reply of `stft-data`."""
        import numpy as np

        with np.load(io.BytesIO(data)) as arrays:
            seconds = {key: float(arrays[key]) if key in arrays else None for key in ("duration", "window")}
            return cls(arrays["freqs"], arrays["times"], arrays["db"], title, seconds["duration"], seconds["window"])

    @property
    def peak_hz(self) -> float:
        """The frequency with the most energy on average (0 Hz excluded)."""
        import numpy as np

        mean_db = self.db[1:].mean(axis=1) if len(self.freqs) > 1 else self.db.mean(axis=1)
        return float(self.freqs[1:][int(np.argmax(mean_db))]) if len(self.freqs) > 1 else float(self.freqs[0])

    def figure(self) -> Any:
        """A matplotlib Figure of it (no pyplot state), drawn by dcf_jupyter.spectrogram as `stft` draws its PNG."""
        return figure_of(self.freqs, self.times, self.db, **self._drawing())

    def png(self) -> bytes:
        """The picture as PNG bytes, the same as `stft`'s for the same audio."""
        return render_png(self.freqs, self.times, self.db, **self._drawing())

    def _drawing(self) -> dict[str, Any]:
        return {"title": self.title, "duration": self.duration, "window_s": self.window_s}

    def _repr_png_(self) -> bytes:
        return self.png()

    def __repr__(self) -> str:
        of = f" of {self.title}" if self.title else ""
        top = hz_label(float(self.freqs[-1]))
        return f"<Spectrum{of}: {len(self.freqs)} frequencies x {len(self.times)} frames, up to {top}>"


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
