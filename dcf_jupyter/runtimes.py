"""The function runtimes dcf-jupyter knows, and their aliases."""

from __future__ import annotations

RUNTIMES: dict[str, str] = {
    "python": "Python 3 on a slim CPU base image",
    "python-gpu": "Python 3 on an NVIDIA CUDA base image (CUDA/cuDNN/Ubuntu from build_args)",
    "tensorflow-gpu": "python-gpu with TensorFlow installed",
}

# Names other DCF configs use for the same runtimes.
ALIASES: dict[str, str] = {"python3": "python", "tensorflow": "python", "python3-gpu": "python-gpu"}


def canonical_runtime(name: str) -> str | None:
    """The canonical runtime for `name` (aliases resolved), or None if unknown."""
    name = name.strip().lower()
    if name in RUNTIMES:
        return name
    return ALIASES.get(name)
