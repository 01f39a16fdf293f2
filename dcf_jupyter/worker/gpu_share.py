"""A replica that holds a share of a GPU keeps PyTorch inside it: once the handler imports torch, its caching
allocator is capped at the share of each visible device (an allocation past it is the handler's own
out-of-memory error, not its neighbour's)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ..settings import ENV_GPU_SHARE


def share_from_environment() -> float | None:
    """The replica's share of its GPU, None when it holds whole devices or none."""
    try:
        share = float(os.environ.get(ENV_GPU_SHARE, ""))
    except ValueError:
        return None
    return share if 0 < share < 1 else None


def cap_torch(torch: Any, share: float) -> None:
    """Cap torch's caching allocator at `share` of each visible device (initialises CUDA when there is one)."""
    if torch.cuda.is_available():
        for device in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(share, device)


class _CapWhenImported(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when `torch` is imported, it lets the real finder load it and caps it afterwards."""

    def __init__(self, share: float) -> None:
        self.share = share

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader, share = spec.loader, self.share
        load = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)
            cap_torch(module, share)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def keep_frameworks_in_share() -> None:
    """Called before the handler is imported: arrange the cap when this replica holds a share of a GPU."""
    share = share_from_environment()
    if share is None:
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        cap_torch(torch, share)
    else:
        sys.meta_path.insert(0, _CapWhenImported(share))
