"""The progress of a map: tqdm's widget bar in a notebook, its text bar on a terminal, nothing elsewhere."""

from __future__ import annotations

import sys
import threading
from typing import Any

REFRESH_S = 0.2  # the bar is redrawn at least this often, results or not (elapsed time and rate move on)


def _in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (where a widget can show)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _bar(name: str, total: int | None) -> Any:
    """A tqdm bar for a map of `total` items (None: unknown) through `name`."""
    if _in_kernel() and _widgets_available():
        from tqdm.notebook import tqdm as notebook_bar

        return notebook_bar(total=total, desc=name, unit="item", mininterval=REFRESH_S, smoothing=0.1)
    from tqdm.std import tqdm as text_bar

    return text_bar(total=total, desc=name, unit="item", mininterval=REFRESH_S, smoothing=0.1, file=sys.stderr,
                    dynamic_ncols=True)


def shown_by_default() -> bool:
    """Progress is shown where someone watches: in a notebook, or on a terminal."""
    return _in_kernel() or sys.stderr.isatty()


class MapProgress:
    """Counts a map's results; with `shown`, draws them (done / total, rate, failures, time left), redrawn at
    least every REFRESH_S by a thread of its own so that a slow function's bar still moves."""

    def __init__(self, name: str, total: int | None, shown: bool) -> None:
        self.done = 0
        self.failed = 0
        self._bar = _bar(name, total) if shown else None
        self._closed = threading.Event()
        if self._bar is not None:
            threading.Thread(target=self._redraw, args=(self._bar,), name=f"dcf-map-progress-{name}",
                             daemon=True).start()

    def _redraw(self, bar: Any) -> None:
        while not self._closed.wait(REFRESH_S):
            bar.refresh()

    def advance(self, failed: bool) -> None:
        """One more result (a failure when `failed`)."""
        self.done += 1
        if failed:
            self.failed += 1
        if self._bar is not None:
            if failed:
                self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        """Stop drawing (tqdm's notebook bar turns red when the map stopped short of its total)."""
        self._closed.set()
        if self._bar is not None:
            self._bar.close()
