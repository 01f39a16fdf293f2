"""requirements.txt of a function: read it, and tell which entries this Python environment lacks."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import ConfigError

REQUIREMENTS = "requirements.txt"
# Installed with `pip install --no-deps`: for packages whose declared dependencies are wrong or heavy
# (pip has no per-line --no-deps).
NODEPS_REQUIREMENTS = "requirements-nodeps.txt"


def read_requirements(path: Path) -> list[str]:
    """The meaningful lines of a requirements file (comments and blanks dropped); [] if there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    for line in lines:
        if _pip_only(line):
            continue  # pip options (-i, --find-links ...), paths and URLs: passed to pip as they are
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise ConfigError(f"{path}: {line!r} is not a valid requirement ({exc})") from None
    return lines


def _pip_only(line: str) -> bool:
    """Lines pip understands but PEP 508 does not: options, local paths, bare URLs."""
    return line.startswith(("-", ".", "/", "~")) or ("://" in line and "@" not in line)


def is_satisfied(line: str) -> bool:
    """True if the running environment already has a distribution meeting this requirement line."""
    if _pip_only(line):
        return False
    requirement = Requirement(line)
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True  # not for this platform
    if requirement.url:
        return False
    try:
        version = metadata.version(canonicalize_name(requirement.name))
    except metadata.PackageNotFoundError:
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
    return requirement.specifier.contains(version, prereleases=True)


def missing_requirements(lines: list[str]) -> list[str]:
    """The lines the running environment does not satisfy, with the pip options they need."""
    missing = [line for line in lines if not line.startswith("-") and not is_satisfied(line)]
    if missing:
        missing = [line for line in lines if line.startswith("-")] + missing
    return missing


def requirements_key(lines: list[str]) -> str:
    """A short stable hash naming the environment that satisfies these lines."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
