"""Walking parsed YAML (or a notebook's settings) with the path of each value, so that every refusal is one sentence
naming where it is: `config.yaml: functions.echo.limits.gpu: ...`, or `%%dcf_function echo: --gpu: ...`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError, brief


def kind_of(value: Any) -> str:
    """What a YAML value is, as a sentence says it ('a mapping', 'a list', 'nothing')."""
    return {dict: "a mapping", list: "a list", bool: "a boolean", type(None): "nothing"}.get(
        type(value), f"a {type(value).__name__}"
    )


class Reader:
    """Turns values into typed ones or into ConfigError; collects warnings. `source` names the file (or the cell,
    or the call) in every sentence; `spelling` maps a key's path to how the user wrote it there (`--gpu` for
    `limits.gpu` in a magic); `strict`: what a file would be warned about is refused (settings typed now, not a
    file to load as well as it can)."""

    def __init__(self, source: str, spelling: Mapping[str, str] | None = None, *, strict: bool = False) -> None:
        self.source = source
        self.spelling = dict(spelling or {})
        self.strict = strict
        self.warnings: list[str] = []

    def name(self, key: str) -> str:
        """How the user wrote `key` (its flag or keyword where it was given as one)."""
        return self.spelling.get(key, key)

    def fail(self, key: str, message: str) -> ConfigError:
        """The error to raise for `key`."""
        return ConfigError(f"{self.source}: {self.name(key)}: {message}")

    def warn(self, key: str, message: str) -> None:
        """Note a problem with `key` that does not stop the load (that does, when strict)."""
        if self.strict:
            raise self.fail(key, message)
        self.warnings.append(f"{self.source}: {self.name(key)}: {message}")

    def unknown_keys(self, data: Mapping[str, Any], prefix: str, known: Iterable[str], *, listed: bool = True) -> None:
        """Warn about each key of `data` not in `known`, suggesting the close match of a misspelling."""
        known = sorted(known)
        for k in data:
            if k in known:
                continue
            close = difflib.get_close_matches(str(k), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
            if listed:
                hint = "; ".join(filter(None, [hint, f"known: {', '.join(known)}"]))
            said = "unknown key" if self.strict else "unknown key, ignored"
            self.warn(f"{prefix}{k}", said + (f" ({hint})" if hint else ""))

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        """A mapping with string keys ({} for nothing)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {kind_of(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {kind_of(k)} {brief(k)}")
        return value

    def string(self, value: Any, key: str, *, max_len: int = 4096) -> str:
        """A string ('' for nothing); numbers are taken as their text, as YAML users expect of `cpu: 1`."""
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a string, got {kind_of(value)}")
        text = str(value)
        if len(text) > max_len:
            raise self.fail(key, f"is {len(text)} characters long; the limit is {max_len}")
        return text

    def integer(self, value: Any, key: str, *, low: int, high: int) -> int | None:
        """A whole number within low..high (None for nothing)."""
        if value is None or value == "":
            return None
        # Never str() a list or mapping: YAML aliases can make one exponentially large ("billion laughs").
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a whole number, got {kind_of(value)}")
        try:
            number = int(str(value))
        except ValueError:
            raise self.fail(key, f"expected a whole number, got {brief(value)}") from None
        if not low <= number <= high:
            raise self.fail(key, f"must be between {low} and {high}, got {number}")
        return number

    def number(self, value: Any, key: str, *, low: float, high: float) -> float | None:
        """A number within low..high (None for nothing)."""
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a number, got {kind_of(value)}")
        try:
            number = float(str(value))
        except ValueError:
            raise self.fail(key, f"expected a number, got {brief(value)}") from None
        if number != number:  # NaN compares false with every bound
            raise self.fail(key, "expected a number, got NaN")
        if not low <= number <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}, got {number:g}")
        return number

    def boolean(self, value: Any, key: str) -> bool | None:
        """true or false (None for nothing)."""
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {kind_of(value)}")
        return value

    def string_list(self, value: Any, key: str) -> list[str]:
        """A list of strings; one string is a list of one."""
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, tuple):  # a notebook's settings: (a, b) means [a, b]
            value = list(value)
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of strings, got {kind_of(value)}")
        return [self.string(item, f"{key}[{i}]") for i, item in enumerate(value)]

    def string_map(self, value: Any, key: str) -> dict[str, str]:
        """A mapping of strings to strings."""
        return {k: self.string(v, f"{key}.{k}") for k, v in self.mapping(value, key).items()}
