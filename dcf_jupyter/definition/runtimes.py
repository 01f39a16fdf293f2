"""The function runtimes dcf-jupyter knows, and their aliases."""

from __future__ import annotations

RUNTIMES: dict[str, str] = {
    "python": "Python 3 on a slim CPU base image",
    "python-gpu": "Python 3 on an NVIDIA CUDA base image (CUDA/cuDNN/Ubuntu from build_args)",
    "tensorflow-gpu": "python-gpu with TensorFlow installed",
}

# Runtimes whose images start from NVIDIA's CUDA base.
GPU_RUNTIMES = frozenset({"python-gpu", "tensorflow-gpu"})

# Names other DCF configs use for the same runtimes.
ALIASES: dict[str, str] = {"python3": "python", "tensorflow": "python", "python3-gpu": "python-gpu"}


def canonical_runtime(name: str) -> str | None:
    """The canonical runtime for `name` (aliases resolved), or None if unknown."""
    name = name.strip().lower()
    if name in RUNTIMES:
        return name
    return ALIASES.get(name)


def runtime_requirements(runtime: str) -> list[str]:
    """What a runtime brings that this Python environment lacks, as requirement lines (the local backend
    installs them as the images' templates do): TensorFlow for tensorflow-gpu, judged by whether the
    `tensorflow` module imports, whichever distribution provides it."""
    import importlib.util
    import platform
    import shutil

    if canonical_runtime(runtime) != "tensorflow-gpu" or importlib.util.find_spec("tensorflow") is not None:
        return []
    if shutil.which("nvidia-smi"):
        return ["tensorflow[and-cuda]>=2.16"]
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        return ["tensorflow-cpu>=2.16"]
    return ["tensorflow>=2.16"]
