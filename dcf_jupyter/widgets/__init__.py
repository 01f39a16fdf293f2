"""Streaming widgets: webcam or video frames through a DCF function, spectrograms inline.

    from dcf_jupyter.widgets import CameraStream, VideoStream, Spectrogram

Needs the notebook extras (`pip install dcf-jupyter[widgets]`): anywidget, ipywidgets,
and OpenCV for VideoStream, matplotlib for Spectrogram.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "CameraStream": "_camera",
    "VideoStream": "_video",
    "Spectrogram": "_spectrogram",
    "plot_spectrogram": "_spectrogram",
    "FrameStream": "_frames",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dcf_jupyter.widgets' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
