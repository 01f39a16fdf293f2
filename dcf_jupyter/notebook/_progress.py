"""Progress of long work (write, check, install, deploy): a widget in notebooks, lines elsewhere."""

from __future__ import annotations

import html
import sys
import time
from typing import Protocol


class Progress(Protocol):
    """What long-running notebook work reports to."""

    def step(self, label: str, fraction: float) -> None:
        """A new stage began; `fraction` of the work is done."""

    def log(self, text: str) -> None:
        """The latest log lines (replacing the previous ones)."""

    def done(self, summary: str) -> None:
        """Finished; `summary` is one line of text."""

    def fail(self) -> None:
        """Failed: the error shown after it says why (said once, there)."""


class TextProgress:
    """Numbered lines on stdout (terminals, plain IPython, scripts)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.started = time.monotonic()
        self._last_log = ""

    def step(self, label: str, fraction: float) -> None:
        print(f"[{self.title}] {label} ...", flush=True)

    def log(self, text: str) -> None:
        last = text.strip().splitlines()[-1] if text.strip() else ""
        if last and last != self._last_log:
            self._last_log = last
            print(f"    {last[:160]}", flush=True)

    def done(self, summary: str) -> None:
        print(f"[{self.title}] {summary} ({time.monotonic() - self.started:.1f}s)", flush=True)

    def fail(self) -> None:
        print(f"[{self.title}] failed (the error below says why)", file=sys.stderr, flush=True)


class WidgetProgress:
    """A progress bar, a status line and a collapsible log; replaced by a one-line summary when done,
    so saved notebooks keep text, not widget state."""

    def __init__(self, title: str) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.title = title
        self.started = time.monotonic()
        self._bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                          layout=widgets.Layout(width="240px"))
        self._status = widgets.HTML(value=f"<b>{html.escape(title)}</b>")
        self._log = widgets.HTML(value="")
        self._details = widgets.Accordion(children=[self._log], selected_index=None)
        self._details.set_title(0, "log")
        box = widgets.VBox([widgets.HBox([self._bar, self._status]), self._details])
        self._handle = display(box, display_id=True)

    def step(self, label: str, fraction: float) -> None:
        self._bar.value = fraction
        self._status.value = f"<b>{html.escape(self.title)}</b>: {html.escape(label)} ..."

    def log(self, text: str) -> None:
        self._log.value = f"<pre style='max-height:14em;overflow:auto;margin:0'>{html.escape(text)}</pre>"

    def _finish(self, markup: str, text: str) -> None:
        if self._handle is not None:
            self._handle.update(_TextAndHtml(text, markup))

    def done(self, summary: str) -> None:
        elapsed = time.monotonic() - self.started
        self._finish(f"<span>&#10003; {html.escape(summary)} <small>({elapsed:.1f}s)</small></span>",
                     f"{summary} ({elapsed:.1f}s)")

    def fail(self) -> None:
        self._finish(f"<span style='color:#b00'>&#10007; {html.escape(self.title)} failed (the error below says "
                     "why)</span>", f"{self.title} failed (the error below says why)")


class _TextAndHtml:
    """An object displaying as HTML in notebooks and as text elsewhere (and in saved notebooks' text)."""

    def __init__(self, text: str, markup: str) -> None:
        self.text, self.markup = text, markup

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel whose front end can show widgets."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_progress(title: str) -> Progress:
    """A widget progress in notebook kernels (when ipywidgets is installed), text lines elsewhere."""
    if in_notebook_kernel():
        try:
            return WidgetProgress(title)
        except ImportError:
            pass
    return TextProgress(title)
