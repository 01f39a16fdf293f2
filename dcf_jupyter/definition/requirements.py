"""requirements.txt of a function: read it, and tell which entries this Python environment lacks."""

from __future__ import annotations

import collections
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import PIP_SAID, ConfigError, InstallFailed, brief
from ..host.credentials import private_dir
from .pip_said import pip_sentence

REQUIREMENTS = "requirements.txt"
# Installed with `pip install --no-deps`: for packages whose declared dependencies are wrong or heavy
# (pip has no per-line --no-deps).
NODEPS_REQUIREMENTS = "requirements-nodeps.txt"


# The pip options a requirements file may carry: where packages come from, and which kinds of them. pip would take
# more (-e, -r, -c read other files and folders of the machine that installs; others change how pip runs), but a
# function's requirements are installed by the gateway, in an image or on a Ray node: those are refused, naming
# the line, rather than dropped or passed on.
INDEX_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links",
                           "--trusted-host", "--pre", "--prefer-binary", "--only-binary", "--no-binary"})


def _option(line: str) -> str:
    """The option of a pip option line: "--index-url" of "--index-url=https://..." or "-i https://..."."""
    word = line.split(None, 1)[0]
    if word.startswith("--"):
        return word.split("=", 1)[0]
    return word[:2]  # "-ihttps://..." is "-i" too


def read_requirements(path: Path) -> list[str]:
    """The meaningful lines of a requirements file (comments and blanks dropped); [] if there is none.
    ConfigError, naming the line, for one that is neither a requirement nor an index option pip takes there."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}: line {number} ({brief(line)})"
        if line.startswith("-"):
            if _option(line) not in INDEX_OPTIONS:
                raise ConfigError(
                    f"{where}: the pip option {_option(line)} is not taken in a function's requirements (only where "
                    f"packages come from: {', '.join(sorted(INDEX_OPTIONS))}); list packages here, and put a local "
                    "one inside the function folder as ./path")
        elif not _pip_only(line):
            try:
                Requirement(line)
            except InvalidRequirement as exc:
                raise ConfigError(f"{where} is not a valid requirement ({exc})") from None
        lines.append(line)
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


# --- the per-user cache of installed requirements ------------------------------------------------

ENV_CACHE_DIR = "DCF_CACHE_DIR"
INSTALLED_MARKER = ".dcf-installed"
PIP_LINES_KEPT = 40


def cache_root() -> Path:
    """Where installed requirements are kept, shared by every gateway, kernel and `dcf function run` of
    this user: $DCF_CACHE_DIR, else the user cache dir."""
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser() / "requirements"
    import platformdirs

    return Path(platformdirs.user_cache_dir("dcf-jupyter", appauthor=False)) / "requirements"


def missing_for(folder: Path, runtime: str) -> tuple[list[str], list[str]]:
    """(requirements, no-deps requirements) of the function folder this Python environment lacks."""
    from .runtimes import runtime_requirements

    missing = runtime_requirements(runtime) + missing_requirements(read_requirements(folder / REQUIREMENTS))
    return missing, missing_requirements(read_requirements(folder / NODEPS_REQUIREMENTS))


def install_missing(folder: Path, runtime: str, *, python: str, output: IO[Any],
                    note: Callable[[str], None] = lambda message: None) -> Path | None:
    """A folder holding the function's requirements that `python`'s environment lacks, or None when it has
    them all. Installed once per user for each set of requirements (keyed by their hash and the Python),
    under a file lock, so two kernels deploying the same function install it once. Blocks while pip runs;
    pip's output goes to `output` (text or binary). InstallFailed says what pip could not install."""
    missing, missing_nodeps = missing_for(folder, runtime)
    if not missing and not missing_nodeps:
        return None
    root = cache_root()
    private_dir(root)  # what a function installs is its owner's alone
    target = root / requirements_key([python, *missing, "--no-deps", *missing_nodeps])
    lock_fd = os.open(target.with_name(target.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(lock_fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second installer waits here, then finds the work done
        if (target / INSTALLED_MARKER).exists():
            return target
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        try:
            for lines, options in ((missing, ()), (missing_nodeps, ("--no-deps",))):
                if lines:
                    note(f"installing requirements missing here: {', '.join(lines)} {' '.join(options)}".rstrip())
                    _pip_install(folder, lines, partial, python, output, options)
            (partial / INSTALLED_MARKER).touch(mode=0o600)
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    note(f"requirements installed into {target}")
    return target


def _pip_install(folder: Path, lines: list[str], target: Path, python: str, output: IO[Any],
                 options: tuple[str, ...]) -> None:
    # Beside the original, so relative paths in it (--find-links ./wheels) mean the same.
    wanted = folder / ".dcf-missing-requirements.txt"
    wanted.write_text("".join(f"{line}\n" for line in lines))
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--target", str(target), *options, "-r", str(wanted)]
    output.flush()
    # umask: what pip writes is the user's alone, whoever installs (a gateway, a kernel, `dcf function run`).
    # Its output goes to `output` as it comes, and its last lines are kept, to say what went wrong.
    said: collections.deque[str] = collections.deque(maxlen=PIP_LINES_KEPT)
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          cwd=str(folder), umask=0o077) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            text = line.decode("utf-8", "replace")
            output.write(text if isinstance(output, io.TextIOBase) else line)
            output.flush()
            said.append(text)
    if pip.returncode != 0:
        raise InstallFailed(pip_sentence(pip.returncode, list(said)), detail=f"{PIP_SAID}\n{''.join(said)}")
