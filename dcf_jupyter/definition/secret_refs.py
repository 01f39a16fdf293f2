"""What a secret may be called and hold: the rules the CLI, the client and the gateway check alike (as Kubernetes
Secrets: a DNS-label name, keys that are file names, at most 1 MiB in all)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import InvalidArgument, brief

SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SECRET_BYTES = 1 << 20  # all of one secret's keys and values, as Kubernetes limits a Secret
MAX_KEYS = 256


def validate_secret_name(name: object) -> str:
    """`name` if it can name a secret (a lowercase DNS label, as function names), else InvalidArgument."""
    if not isinstance(name, str) or not SECRET_NAME_RE.match(name):
        raise InvalidArgument(f"invalid secret name {brief(name)}: use 1-63 lowercase letters, digits and '-', "
                              "starting and ending with a letter or digit (e.g. 'openai-key')")
    return name


def validate_secret_key(key: object, secret: str = "") -> str:
    """`key` if it can be a key of a secret (it becomes a file name), else InvalidArgument."""
    if not isinstance(key, str) or not KEY_RE.match(key) or key in (".", ".."):
        of = f" of secret {secret!r}" if secret else ""
        raise InvalidArgument(f"invalid key {brief(key)}{of}: use letters, digits, '-', '_' and '.' (it becomes a "
                              "file name, and an environment variable's name where the function asks for that)")
    return key


def validate_secret_values(name: str, values: dict[str, bytes]) -> dict[str, bytes]:
    """A secret's whole content, checked: at least one key, valid keys, within the size limit."""
    validate_secret_name(name)
    if not values:
        raise InvalidArgument(f"secret {name!r} has no key: give at least one (--from-literal KEY=VALUE, "
                              "--from-env-file FILE or --from-file KEY=PATH)")
    if len(values) > MAX_KEYS:
        raise InvalidArgument(f"secret {name!r} has {len(values)} keys; at most {MAX_KEYS}")
    for key in values:
        validate_secret_key(key, name)
    size = sum(len(k) + len(v) for k, v in values.items())
    if size > MAX_SECRET_BYTES:
        raise InvalidArgument(f"secret {name!r} holds {size} bytes; at most {MAX_SECRET_BYTES} (1 MiB), as "
                              "Kubernetes allows: put larger files in the function's folder")
    return values


def env_secret_keys(values: dict[str, bytes]) -> dict[str, str]:
    """The keys of a secret that can be environment variables (a variable's name, a text value), with their
    values as text."""
    found = {}
    for key, value in values.items():
        if ENV_KEY_RE.match(key):
            try:
                found[key] = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
    return found


def parse_literal(item: str) -> tuple[str, str]:
    """KEY=VALUE (as `--from-literal` takes it) as (key, value)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise InvalidArgument("expected KEY=VALUE, got text with no key before '=' (not shown: it may be the "
                              "secret itself)")
    return validate_secret_key(key), value


def read_env_file(path: str | Path) -> dict[str, str]:
    """The KEY=VALUE lines of a .env file (blank lines, # comments, `export ` and matching quotes allowed), as
    `docker --env-file` and python-dotenv read them."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot read it as text ({getattr(exc, 'strerror', None) or exc})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InvalidArgument(f"{path}, line {number}: expected KEY=VALUE")  # the value is never echoed
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        try:
            values[validate_secret_key(key)] = value
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}, line {number}: {exc}") from None
    if not values:
        raise InvalidArgument(f"{path}: no KEY=VALUE line in it")
    return values


def read_file_value(item: str) -> tuple[str, bytes]:
    """KEY=PATH or PATH (the key is then the file's name), as `--from-file` takes it: (key, the file's bytes)."""
    key, sep, where = item.partition("=")
    if not sep:
        key, where = Path(item).name, item
    path = Path(where).expanduser()
    try:
        if path.stat().st_size > MAX_SECRET_BYTES:
            raise InvalidArgument(f"{path}: larger than a secret may be (1 MiB)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidArgument(f"{path}: a folder; give one file per key") from None
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read it ({exc.strerror})") from None
    return validate_secret_key(key), data


def gather_values(literals: Iterable[str] = (), env_files: Iterable[str | Path] = (),
                  files: Iterable[str] = ()) -> dict[str, bytes]:
    """One secret's values from the sources the CLI and the Python API take, later ones over earlier ones."""
    values: dict[str, bytes] = {}
    for env_file in env_files:
        values.update({k: v.encode() for k, v in read_env_file(env_file).items()})
    for item in literals:
        key, value = parse_literal(item)
        values[key] = value.encode()
    for item in files:
        key, data = read_file_value(item)
        values[key] = data
    return values
