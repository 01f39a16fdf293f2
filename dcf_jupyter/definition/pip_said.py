"""What pip's output says went wrong with a function's requirements, in one sentence: the requirement it could not
find (and a close name, when one is at hand) or could not satisfy, else its last error line. The output itself
goes with the error as its detail, under "pip said:" (`errors.PIP_SAID`)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from importlib import metadata

from packaging.utils import canonicalize_name

_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_VERSIONS = re.compile(r"Could not find a version that satisfies the requirement (\S+) \(from versions: (.*)\)")
_INVALID = re.compile(r"Invalid requirement: '?([^'\n]+)'?")
VERSIONS_SHOWN = 5


def _name(requirement: str) -> str:
    """The project name of a requirement as pip prints it ('numpy==9' -> 'numpy')."""
    return re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0]


def close_names(name: str, known: Iterable[str] | None = None) -> list[str]:
    """Known project names that look like `name` (by default, those installed here): a misspelling's likely
    meaning."""
    if known is None:
        known = {dist.metadata["Name"] or "" for dist in metadata.distributions()}
    wanted = str(canonicalize_name(name))
    names = {str(canonicalize_name(k)): k for k in known if k}
    names.pop(wanted, None)
    return [names[match] for match in difflib.get_close_matches(wanted, list(names), n=1, cutoff=0.8)]


def pip_sentence(code: int, lines: Sequence[str], known: Iterable[str] | None = None) -> str:
    """Why `pip install` exited with `code`, from its output `lines`."""
    text = "".join(lines)
    versions = _VERSIONS.search(text)
    if versions is not None:
        requirement, found = versions.group(1), versions.group(2).strip()
        if found and found != "none":
            every = [v.strip() for v in found.split(",")]
            newest = ", ".join(every[-VERSIONS_SHOWN:])
            seen = (f"{len(every)} versions, the newest {newest}" if len(every) > VERSIONS_SHOWN else newest)
            return f"no version of {_name(requirement)} satisfies the requirement {requirement!r} (pip found {seen})"
    missing = _NOT_FOUND.search(text) or versions
    if missing is not None:
        name = _name(missing.group(1))
        close = close_names(name, known)
        hint = f": did you mean {close[0]}?" if close else ": is its name spelled as on PyPI?"
        return f"pip found no package {name!r} for the requirement {missing.group(1)!r}{hint}"
    invalid = _INVALID.search(text)
    if invalid is not None:
        return f"pip cannot read the requirement {invalid.group(1).strip()!r}"
    errors = [line.strip() for line in lines if line.startswith("ERROR:")]
    last = errors[-1].removeprefix("ERROR:").strip() if errors else ""
    return f"installing requirements failed (pip exited with code {code})" + (f": {last}" if last else "")
