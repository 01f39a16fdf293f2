"""config.yaml's keys, each declared once: a dataclass field made by `key()`, whose `Key` says how its value is read
and checked (one sentence naming the key when it is wrong), written back, described in the JSON Schema, and offered
as `%%dcf_function`'s flag and `dcf_jupyter.function()`'s keyword. Sections (`limits:`, `autoscaling:`) are
dataclasses declared the same way; a section's cross-key rules live in its `check(checker)` method.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from ..errors import brief
from .reader import Reader


class Kind:
    """How one kind of value is read, written and described. A kind reads its own key of the section's mapping
    (`read`), so one that spans two keys (`gpu` with `gpu_type`) can."""

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        """The typed value of `value` (None: not given, the field's default applies), or r.fail(key, ...)."""
        raise NotImplementedError

    def read(self, r: Reader, data: Mapping[str, Any], name: str, key: str) -> Any:
        """The typed value of this key of `data` (None when absent)."""
        return self.convert(r, data.get(name), key)

    def dump(self, value: Any) -> Any:
        """The value as config.yaml holds it."""
        return value

    def schema(self) -> dict[str, Any]:
        """This value's JSON Schema."""
        raise NotImplementedError

    def properties(self, name: str, described: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The JSON Schema properties this key brings to its section (`described` is its schema with the help)."""
        return {name: described}

    @property
    def many(self) -> bool:
        """Whether a flag of this kind takes several words (`--secrets a b`)."""
        return False


@dataclass(frozen=True)
class Text(Kind):
    """A string. `pattern` (with `says`, what is expected) or `check` (the sentence for a bad value, or None)
    refuse bad ones; '' is not given."""

    max_len: int = 4096
    pattern: str = ""
    says: str = ""
    check: Callable[[str], str | None] | None = None
    choices: tuple[str, ...] = ()
    numeric: bool = False  # YAML users write `cpu: 1`: a number is its text

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        text = r.string(value, key, max_len=self.max_len).strip()
        if not text:
            return None
        if self.pattern and not re.match(self.pattern, text):
            raise r.fail(key, f"expected {self.says}, got {text!r}")
        problem = self.check(text) if self.check else None
        if problem:
            raise r.fail(key, problem)
        return text

    def schema(self) -> dict[str, Any]:
        # null and '' are "not given" to the loader (DCF writes `maintainer: ''`), so the schema lets them be.
        out: dict[str, Any] = {"type": ["string", "number", "null"] if self.numeric else ["string", "null"]}
        if self.pattern:
            out["pattern"] = f"^$|{self.pattern}"
        if self.max_len != 4096:
            out["maxLength"] = self.max_len
        if self.choices:
            out["examples"] = list(self.choices)
        return out


@dataclass(frozen=True)
class Integer(Kind):
    """A whole number within low..high."""

    low: int
    high: int

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        return r.integer(value, key, low=self.low, high=self.high)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Number(Kind):
    """A number within low..high."""

    low: float
    high: float

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        return r.number(value, key, low=self.low, high=self.high)

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Flag(Kind):
    """true or false."""

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        return r.boolean(value, key)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class TextList(Kind):
    """A list of strings (one string is a list of one), each checked by `check` when given."""

    check: Callable[[str], str | None] | None = None
    unique: bool = False

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        items = r.string_list(value, key)
        for i, item in enumerate(items):
            problem = self.check(item) if self.check else None
            if problem:
                raise r.fail(f"{key}[{i}]", problem)
        return list(dict.fromkeys(items)) if self.unique else items

    def dump(self, value: Any) -> Any:
        return list(value)

    def schema(self) -> dict[str, Any]:
        return {"type": ["array", "string"], "items": {"type": "string"}}

    @property
    def many(self) -> bool:
        return True


@dataclass(frozen=True)
class TextMap(Kind):
    """A mapping of strings to strings."""

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        return r.string_map(value, key)

    def dump(self, value: Any) -> Any:
        return dict(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}


@dataclass(frozen=True)
class Assignments(Kind):
    """NAME=VALUE pairs, as DCF writes `environment` and `build_args` (a list of "K=V"); a mapping is accepted too.
    `as_list`: keep the list form (build_args), else a dict (environment, always written back as a list)."""

    as_list: bool = False

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        if isinstance(value, dict):
            pairs = [(k, v) for k, v in r.string_map(value, key).items()]
        else:
            pairs = []
            for i, item in enumerate(r.string_list(value, key)):
                name, sep, val = item.partition("=")
                if not sep or not name:
                    raise r.fail(f"{key}[{i}]", f"expected NAME=VALUE, got {brief(item)}")
                pairs.append((name, val))
        return [f"{k}={v}" for k, v in pairs] if self.as_list else dict(pairs)

    def dump(self, value: Any) -> Any:
        return list(value) if self.as_list else [f"{k}={v}" for k, v in value.items()]

    def schema(self) -> dict[str, Any]:
        return {"type": ["array", "object"], "items": {"type": "string", "pattern": "^[^=]+="},
                "additionalProperties": {"type": ["string", "number", "boolean"]}}

    @property
    def many(self) -> bool:
        return True


@dataclass(frozen=True)
class Either(Kind):
    """true/false, or else a value of `other` (`secrets_as_env`: all of them, or these)."""

    other: Kind

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        return value if isinstance(value, bool) else self.other.convert(r, value, key)

    def dump(self, value: Any) -> Any:
        return value if isinstance(value, bool) else self.other.dump(value)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "boolean"}, self.other.schema()]}


@dataclass(frozen=True)
class Section(Kind):
    """A nested mapping declared by a dataclass (`handler:`, `limits:`, `autoscaling:`); `optional`: absent means
    None, not a section of defaults."""

    cls: type
    optional: bool = False

    def convert(self, r: Reader, value: Any, key: str) -> Any:
        if value is None and self.optional:
            return None
        return read_section(self.cls, r, r.mapping(value, key), f"{key}.")

    def dump(self, value: Any) -> Any:
        return dump_section(value)

    def schema(self) -> dict[str, Any]:
        return section_schema(self.cls)


@dataclass(frozen=True)
class Key:
    """What a field is in config.yaml: its `kind`, a one-line `help` (the schema's description and the flag's
    help), whether it is written even at its default (`always`: DCF's own keys, in the layout the DCF CLI writes),
    the sentence when a `required` key is missing, and the notebook's `flag` and `keyword` for it."""

    kind: Kind
    help: str
    always: bool = False
    required: str = ""
    flag: str = ""
    keyword: str = ""
    metavar: str = ""


def key(default: Any = MISSING, kind: Kind | None = None, *, help: str, factory: Callable[[], Any] | None = None,
        always: bool = False, required: str = "", flag: str = "", keyword: str = "", metavar: str = "") -> Any:
    """A declared config.yaml key: a dataclass field with its `Key`."""
    assert kind is not None
    metadata = {"key": Key(kind, help, always, required, flag, keyword, metavar)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Key]]:
    """The declared keys of a section, in declaration order (fields without a Key are not config.yaml's)."""
    for item in dataclasses.fields(cls):
        found = item.metadata.get("key")
        if isinstance(found, Key):
            yield item, found


def _default(item: dataclasses.Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return None


class Checker:
    """What a section's `check` uses: fail or warn about a key of the section, and name one as the user wrote it."""

    def __init__(self, reader: Reader, prefix: str) -> None:
        self.reader = reader
        self.prefix = prefix

    def name(self, key: str) -> str:
        """How the user wrote the section's `key` (its flag or keyword), else the key within the section."""
        return self.reader.spelling.get(self.prefix + key, key)

    def fail(self, key: str, message: str) -> Exception:
        """The error to raise about the section's `key`."""
        return self.reader.fail(self.prefix + key, message)

    def warn(self, key: str, message: str) -> None:
        """A warning about the section's `key`."""
        self.reader.warn(self.prefix + key, message)


def known_keys(cls: type) -> list[str]:
    """Every key a section's mapping may hold (a kind spanning two keys brings both)."""
    names: list[str] = []
    for item, found in declared(cls):
        names.extend(found.kind.properties(item.name, {}))
    return names


def read_section(cls: type, r: Reader, data: Mapping[str, Any], prefix: str, *, listed: bool = True,
                 **given: Any) -> Any:
    """An instance of section `cls` from its mapping: each key read and checked, unknown keys warned about, then
    the section's own `check`. `given` are fields that are not config.yaml's (a function's name and folder)."""
    r.unknown_keys(data, prefix, known_keys(cls), listed=listed)
    values: dict[str, Any] = dict(given)
    for item, found in declared(cls):
        value = found.kind.read(r, data, item.name, prefix + item.name)
        if value is None and found.required and item.name not in data:
            raise r.fail(prefix + item.name, f"missing: {found.required}")
        values[item.name] = _default(item) if value is None else value
    section = cls(**values)
    check = getattr(section, "check", None)
    if check is not None:
        check(Checker(r, prefix))
    return section


def dump_section(section: Any) -> dict[str, Any]:
    """A section as config.yaml holds it: DCF's own keys always, the others where they differ from the default."""
    out: dict[str, Any] = {}
    for item, found in declared(type(section)):
        value = getattr(section, item.name)
        if value is None or not (found.always or (value != _default(item) and value not in ([], {}))):
            continue
        out[item.name] = found.kind.dump(value)
    return out


def section_schema(cls: type) -> dict[str, Any]:
    """A section's JSON Schema: its keys described, unknown ones flagged (the loader warns about them)."""
    properties: dict[str, Any] = {}
    for item, found in declared(cls):
        described = {"description": found.help, **found.kind.schema()}
        default = _default(item)
        if isinstance(default, (str, int, float, bool)) and default != "" and not isinstance(found.kind, Section):
            described["default"] = default
        properties.update(found.kind.properties(item.name, described))
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    required = [item.name for item, found in declared(cls) if found.required]
    if required:
        schema["required"] = required
    return schema


@dataclass(frozen=True)
class KeyPath:
    """A key the notebook offers: its dotted `path` in a function's mapping, and its declaration."""

    path: str
    key: Key


def key_paths(cls: type, prefix: str = "") -> Iterator[KeyPath]:
    """Every declared key of `cls` and its sections, with its path (`limits.gpu`)."""
    for item, found in declared(cls):
        yield KeyPath(prefix + item.name, found)
        if isinstance(found.kind, Section):
            yield from key_paths(found.kind.cls, f"{prefix}{item.name}.")


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted paths to nested mappings: {'limits.gpu': 1} is {'limits': {'gpu': 1}}."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        *parents, leaf = path.split(".")
        where = out
        for part in parents:
            where = where.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(where.get(leaf), dict):
            where[leaf].update(value)
        else:
            where[leaf] = dict(value) if isinstance(value, Mapping) else value
    return out
