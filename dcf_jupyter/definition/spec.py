"""config.yaml: read, validate and write function specs with DCF's keys.

A file written by the original DCF CLI loads unchanged. Unknown keys are kept
out of the model but reported as warnings; wrong types raise `ConfigError`
naming the file and the key (``config.yaml: functions.echo.limits.gpu: ...``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ..errors import ConfigError, InvalidArgument, InvalidName, brief
from .runtimes import GPU_RUNTIMES, RUNTIMES, canonical_runtime
from .secret_refs import validate_secret_name

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_CONFIG_BYTES = 1 << 20
DEFAULT_HANDLER_DIR = "./src"
DEFAULT_HANDLER_FILE = "handler.py"
DEFAULT_HANDLER_NAME = "Handler"
MAX_REPLICAS = 64
DEFAULT_CALL_TIMEOUT_S = 300.0  # a call's limit when config.yaml sets no `timeout`


def validate_name(name: object) -> str:
    """Return `name` if it is a lowercase DNS label (what DCF and Kubernetes accept), else raise InvalidName."""
    if not isinstance(name, str) or not name:
        raise InvalidName("a function name must be a non-empty string")
    if not NAME_RE.match(name):
        raise InvalidName(
            f"invalid function name {brief(name)}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'hello-dcf')"
        )
    return name


@dataclass
class HandlerRef:
    """Where the Handler lives: `dir` (relative to config.yaml), `file` ('' means handler.py) and class `name`."""

    dir: str = DEFAULT_HANDLER_DIR
    file: str = ""
    name: str = DEFAULT_HANDLER_NAME

    @property
    def filename(self) -> str:
        """The handler file name, with DCF's empty default resolved."""
        return self.file or DEFAULT_HANDLER_FILE


_MEMORY_RE = re.compile(r"^(\d+(\.\d+)?)\s*([kmgtKMGT]i?[bB]?|[bB])?$")
_GPU_RE = re.compile(r"^(?:(?P<kind>[A-Za-z][-\w.]{0,39}):)?(?P<count>\d{1,2}(\.\d{1,4})?|\.\d{1,4})$")
MAX_GPUS = 64


@dataclass(frozen=True)
class GpuRequest:
    """`limits.gpu` of a function: whole devices (`1`, `2`) or a share of one (`0.5`, `0.25`, as Ray's
    `num_gpus`), of a named kind when `kind` is set (`H100:1`); `count` 0 asks for none."""

    count: float = 0.0
    kind: str = ""

    def __post_init__(self) -> None:
        if self.count < 0 or (self.count > 1 and self.count != int(self.count)) or self.count > MAX_GPUS:
            raise ValueError(f"a replica gets whole GPUs (1-{MAX_GPUS}) or a share of one (0-1), not {self.count:g}")

    @classmethod
    def parse(cls, text: str, kind: str = "") -> GpuRequest:
        """From config.yaml's text ('1', '0.5', 'H100:1'); ValueError with the reason when it is none of them."""
        text = text.strip()
        if not text:
            if kind:
                raise ValueError("gpu_type names a kind of GPU but gpu: says how many of it")
            return cls()
        match = _GPU_RE.match(text)
        if match is None:
            raise ValueError(f"expected a number of GPUs like '1', a share like '0.5', or 'KIND:N' like 'H100:1', "
                             f"got {text!r}")
        named = match.group("kind") or ""
        if named and kind and named.lower() != kind.lower():
            raise ValueError(f"gpu: names {named!r} but gpu_type: names {kind!r}")
        return cls(float(match.group("count")), named or kind)

    def __bool__(self) -> bool:
        return self.count > 0

    def __str__(self) -> str:
        """DCF's string form, as config.yaml and FunctionResources.GPU carry it."""
        if not self:
            return ""
        number = str(int(self.count)) if self.is_whole else f"{self.count:g}"
        return f"{self.kind}:{number}" if self.kind else number

    @property
    def is_whole(self) -> bool:
        """True for whole devices (1, 2, ...), False for a share of one."""
        return self.count == int(self.count)

    @property
    def devices(self) -> int:
        """How many devices a replica occupies, wholly or in part (0 when none)."""
        return int(self.count) if self.is_whole else 1

    @property
    def share(self) -> float:
        """The share of each occupied device: 1.0 for whole devices."""
        return 1.0 if self.is_whole else self.count


@dataclass
class Resources:
    """DCF's FunctionResources: `memory` and `cpu` as DCF writes them (empty: not set), `gpu` typed."""

    memory: str = ""
    cpu: str = ""
    gpu: GpuRequest = field(default_factory=GpuRequest)

    @property
    def cpus(self) -> float | None:
        """CPUs asked for ('500m' is 0.5), None when unset."""
        if not self.cpu:
            return None
        return float(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        """Memory asked for in bytes ('2G' and '2Gi' both understood), None when unset."""
        if not self.memory:
            return None
        m = _MEMORY_RE.match(self.memory)
        assert m is not None  # validated on load
        number, unit = float(m.group(1)), (m.group(3) or "").lower().rstrip("b")
        base = 1024 if unit.endswith("i") else 1000
        power = "bkmgt".index(unit[0]) if unit else 0
        return int(number * base**power)

    def is_empty(self) -> bool:
        """True when nothing is set."""
        return not (self.memory or self.cpu or self.gpu)

    def as_dcf(self) -> dict[str, str]:
        """DCF's three strings (config.yaml's `limits:`, FunctionResources)."""
        return {"memory": self.memory, "cpu": self.cpu, "gpu": str(self.gpu)}


AUTOSCALING_KEYS = ("min_replicas", "max_replicas", "target_ongoing_requests", "upscale_delay_s",
                    "downscale_delay_s")


# Ray Serve's defaults, so that one config.yaml means the same on every backend.
DEFAULT_TARGET_ONGOING_REQUESTS = 2.0
DEFAULT_UPSCALE_DELAY_S = 30.0
DEFAULT_DOWNSCALE_DELAY_S = 600.0


@dataclass
class Autoscaling:
    """`autoscaling:` of a function: keep between `min_replicas` (0: none while idle) and `max_replicas` replicas,
    about `target_ongoing_requests` calls in each; the delays are how long load must stay high (low) before
    replicas are added (removed). Unset numbers are Ray Serve's defaults, on every backend."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float | None = None
    upscale_delay_s: float | None = None
    downscale_delay_s: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The keys that are set, as config.yaml and Serve's `autoscaling_config` name them."""
        values = {key: getattr(self, key) for key in AUTOSCALING_KEYS}
        return {key: value for key, value in values.items() if value is not None}

    @property
    def target(self) -> float:
        """Calls in flight per replica the autoscaler aims for."""
        return DEFAULT_TARGET_ONGOING_REQUESTS if self.target_ongoing_requests is None else self.target_ongoing_requests

    @property
    def upscale_delay(self) -> float:
        """Seconds load must stay above the target before replicas are added."""
        return DEFAULT_UPSCALE_DELAY_S if self.upscale_delay_s is None else self.upscale_delay_s

    @property
    def downscale_delay(self) -> float:
        """Seconds load must stay below the target (or calls stay away) before replicas are removed."""
        return DEFAULT_DOWNSCALE_DELAY_S if self.downscale_delay_s is None else self.downscale_delay_s

    def clamp(self, replicas: int) -> int:
        """`replicas` within min_replicas..max_replicas."""
        return max(self.min_replicas, min(self.max_replicas, replicas))

    @property
    def said(self) -> str:
        """'0-3 replicas, autoscaled' as deploy messages and listings say it."""
        return f"{self.min_replicas}-{self.max_replicas} replicas, autoscaled"


@dataclass
class FunctionSpec:
    """One function of a config.yaml; `root` is the folder holding the config file."""

    name: str
    runtime: str = "python"
    desc: str = ""
    maintainer: str = ""
    handler: HandlerRef = field(default_factory=HandlerRef)
    docker_registry: str = ""
    image: str = ""
    limits: Resources = field(default_factory=Resources)
    build_args: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    build_packages: list[str] = field(default_factory=list)
    skip_build: bool = False
    replicas: int = 1
    timeout: float | None = None
    concurrency: int = 1
    autoscaling: Autoscaling | None = None
    backend: str = ""
    base_image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # names of the gateway's secrets its replicas get as files
    secrets_as_env: bool | list[str] = False  # and as environment variables: all of them, or these
    root: Path | None = None

    @property
    def call_timeout(self) -> float:
        """Seconds a call may take (config.yaml's `timeout`, else DEFAULT_CALL_TIMEOUT_S): the one place it is
        decided, for the gateway and the worker alike."""
        return self.timeout or DEFAULT_CALL_TIMEOUT_S

    @property
    def env_secrets(self) -> list[str]:
        """The secrets whose keys its replicas also get as environment variables."""
        if self.secrets_as_env is True:
            return list(self.secrets)
        return [name for name in self.secrets if name in (self.secrets_as_env or [])]

    @property
    def handler_dir(self) -> Path:
        """Absolute folder of the handler file, inside the function folder as written (a linked src/ stays
        src/, not where the link leads)."""
        return Path(os.path.abspath((self.root or Path.cwd()) / self.handler.dir))

    @property
    def handler_path(self) -> Path:
        """Absolute path of the handler file."""
        return self.handler_dir / self.handler.filename

    @property
    def requirements_path(self) -> Path:
        """requirements.txt beside src/ (DCF installs it at build)."""
        return (self.root or Path.cwd()) / "requirements.txt"

    @property
    def build_arg_map(self) -> dict[str, str]:
        """build_args as a mapping."""
        return dict(arg.split("=", 1) for arg in self.build_args)

    @property
    def wants_cuda(self) -> bool:
        """Whether it runs on a CUDA base image: a GPU runtime, or any GPU asked for (the one place this is
        decided)."""
        return canonical_runtime(self.runtime) in GPU_RUNTIMES or bool(self.limits.gpu)

    @property
    def image_ref(self) -> str:
        """The image tag to build or run: `image`, else registry/name, else name."""
        if self.image:
            return self.image
        return f"{self.docker_registry}/{self.name}" if self.docker_registry else self.name


@dataclass
class ConfigFile:
    """A whole config.yaml: its functions, the `dcf.gateway` address and load warnings."""

    functions: dict[str, FunctionSpec]
    gateway: str = ""
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def function(self, name: str | None = None) -> FunctionSpec:
        """The function called `name`, or the only one when `name` is None."""
        where = self.path.name if self.path else "config"
        if name is None:
            if len(self.functions) == 1:
                return next(iter(self.functions.values()))
            raise ConfigError(
                f"{where} defines {len(self.functions)} functions ({', '.join(self.functions)}); name one"
            )
        try:
            return self.functions[name]
        except KeyError:
            raise ConfigError(
                f"{where} has no function {name!r} (it defines: {', '.join(self.functions) or 'none'})"
            ) from None


# --- reading -----------------------------------------------------------------

_FUNCTION_KEYS = {
    "runtime", "desc", "maintainer", "handler", "docker_registry", "image", "limits", "requests",
    "build_args", "environment", "build_packages", "skip_build", "replicas", "timeout",
    "concurrency", "autoscaling", "backend", "labels", "annotations", "base_image", "lang", "secrets", "constraints",
    "secrets_as_env",
}
# Keys DCF and faas-style files may carry that nothing here reads, and why.
_IGNORED_FUNCTION_KEYS = {
    "lang": "not used by dcf-jupyter, ignored",
    "constraints": "not used by dcf-jupyter, ignored",
    "requests": "not used by dcf-jupyter, ignored: every backend reserves what `limits:` asks",
}


class _Reader:
    """Walks parsed YAML with a path for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.warnings: list[str] = []

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.source}: {key}: {message}")

    def unknown_keys(self, data: dict[str, Any], prefix: str, known: Iterable[str], *, listed: bool = True) -> None:
        """Warn about each key of `data` not in `known`, suggesting the close match of a misspelling."""
        known = sorted(known)
        for k in data:
            if k in known:
                continue
            close = difflib.get_close_matches(str(k), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
            if listed:
                hint = "; ".join(filter(None, [hint, f"known: {', '.join(known)}"]))
            self.warn(f"{prefix}{k}", "unknown key, ignored" + (f" ({hint})" if hint else ""))

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {_kind(k)} {brief(k)}")
        return value

    def string(self, value: Any, key: str, *, max_len: int = 4096) -> str:
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a string, got {_kind(value)}")
        text = str(value)
        if len(text) > max_len:
            raise self.fail(key, f"is {len(text)} characters long; the limit is {max_len}")
        return text

    def integer(self, value: Any, key: str, *, low: int, high: int, default: int) -> int:
        if value is None or value == "":
            return default
        # Never str() a list or mapping: YAML aliases can make one exponentially large ("billion laughs").
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a whole number, got {_kind(value)}")
        try:
            number = int(str(value))
        except ValueError:
            raise self.fail(key, f"expected a whole number, got {brief(value)}") from None
        if not low <= number <= high:
            raise self.fail(key, f"must be between {low} and {high}, got {number}")
        return number

    def number(self, value: Any, key: str, *, low: float, high: float) -> float | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a number, got {_kind(value)}")
        try:
            number = float(str(value))
        except ValueError:
            raise self.fail(key, f"expected a number, got {brief(value)}") from None
        if number != number:  # NaN compares false with every bound
            raise self.fail(key, "expected a number, got NaN")
        if not low <= number <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}, got {number:g}")
        return number

    def string_list(self, value: Any, key: str) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of strings, got {_kind(value)}")
        return [self.string(item, f"{key}[{i}]") for i, item in enumerate(value)]

    def secret_names(self, value: Any, key: str) -> list[str]:
        """A list of secret names (each once), as `secrets:` and `secrets_as_env:` hold them."""
        names = self.string_list(value, key)
        for i, name in enumerate(names):
            try:
                validate_secret_name(name)
            except InvalidArgument as exc:
                raise self.fail(f"{key}[{i}]", str(exc)) from None
        return list(dict.fromkeys(names))

    def env_map(self, value: Any, key: str) -> dict[str, str]:
        """DCF writes `environment` as a list of "K=V"; a mapping is accepted too."""
        if value is None:
            return {}
        if isinstance(value, dict):
            return {k: self.string(v, f"{key}.{k}") for k, v in self.mapping(value, key).items()}
        result: dict[str, str] = {}
        for i, item in enumerate(self.string_list(value, key)):
            name, sep, val = item.partition("=")
            if not sep or not name:
                raise self.fail(f"{key}[{i}]", f"expected NAME=VALUE, got {brief(item)}")
            result[name] = val
        return result

    def string_map(self, value: Any, key: str) -> dict[str, str]:
        return {k: self.string(v, f"{key}.{k}") for k, v in self.mapping(value, key).items()}

    def resources(self, value: Any, key: str) -> Resources:
        data = self.mapping(value, key)
        self.unknown_keys(data, f"{key}.", ("memory", "cpu", "gpu", "gpu_type"))
        memory = self.string(data.get("memory"), f"{key}.memory").strip()
        cpu = self.string(data.get("cpu"), f"{key}.cpu").strip()
        if memory and not _MEMORY_RE.match(memory):
            raise self.fail(f"{key}.memory", f"expected a size like '512M' or '2G', got {memory!r}")
        if cpu and not re.match(r"^(\d+(\.\d+)?|\d+m)$", cpu):
            raise self.fail(f"{key}.cpu", f"expected a CPU count like '1', '0.5' or '500m', got {cpu!r}")
        try:
            gpu = GpuRequest.parse(self.string(data.get("gpu"), f"{key}.gpu"),
                                   self.string(data.get("gpu_type"), f"{key}.gpu_type").strip())
        except ValueError as exc:
            raise self.fail(f"{key}.gpu", str(exc)) from None
        return Resources(memory=memory, cpu=cpu, gpu=gpu)

    def autoscaling(self, value: Any, key: str) -> Autoscaling | None:
        if value is None:
            return None
        data = self.mapping(value, key)
        self.unknown_keys(data, f"{key}.", AUTOSCALING_KEYS)
        if "max_replicas" not in data:
            raise self.fail(f"{key}.max_replicas", "missing: autoscaling needs the most replicas it may run")
        low = self.integer(data.get("min_replicas"), f"{key}.min_replicas", low=0, high=MAX_REPLICAS, default=1)
        high = self.integer(data.get("max_replicas"), f"{key}.max_replicas", low=1, high=MAX_REPLICAS, default=1)
        if high < low:
            raise self.fail(f"{key}.max_replicas", f"is {high}, fewer than min_replicas ({low})")
        day = 24 * 3600.0
        return Autoscaling(
            min_replicas=low, max_replicas=high,
            target_ongoing_requests=self.number(data.get("target_ongoing_requests"),
                                                f"{key}.target_ongoing_requests", low=0.01, high=1e6),
            upscale_delay_s=self.number(data.get("upscale_delay_s"), f"{key}.upscale_delay_s", low=0, high=day),
            downscale_delay_s=self.number(data.get("downscale_delay_s"), f"{key}.downscale_delay_s", low=0,
                                          high=day),
        )


def autoscaling_from(values: Mapping[str, Any], source: str) -> Autoscaling:
    """`autoscaling:` keys given outside a config.yaml (the notebook's flags), checked as config.yaml's are."""
    reader = _Reader(source)
    found = reader.autoscaling(dict(values), "autoscaling")
    if reader.warnings:
        raise ConfigError(reader.warnings[0])
    assert found is not None  # a mapping always gives one
    return found


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", bool: "a boolean", type(None): "nothing"}.get(
        type(value), f"a {type(value).__name__}"
    )


def parse_config(text: str, *, source: str = "config.yaml", root: Path | None = None) -> ConfigFile:
    """Parse config.yaml text; `source` names the file in errors, `root` is its folder."""
    if len(text.encode("utf-8", "replace")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except RecursionError:  # PyYAML composes nested nodes recursively: a hostile file could nest thousands deep
        raise ConfigError(f"{source}: nested too deeply to be a config file") from None
    r = _Reader(source)
    top = r.mapping(data, "(top level)")
    r.unknown_keys({k: v for k, v in top.items() if k not in ("provider", "version")}, "", ("functions", "dcf"))
    functions_data = r.mapping(top.get("functions"), "functions")
    if not functions_data:
        misspelt = [k for k in top if k != "functions" and difflib.get_close_matches(str(k), ["functions"], n=1)]
        if misspelt:
            raise r.fail("functions", f"no functions defined: the key is 'functions:', not {misspelt[0]!r}")
        raise r.fail("functions", "no functions defined; add one under 'functions:'")
    functions: dict[str, FunctionSpec] = {}
    for name, body in functions_data.items():
        try:
            validate_name(name)
        except InvalidName as exc:
            raise r.fail(f"functions.{name}", str(exc)) from None
        functions[name] = _parse_function(r, name, body, root)
    dcf = r.mapping(top.get("dcf"), "dcf")
    r.unknown_keys(dcf, "dcf.", ("gateway",))
    gateway = r.string(dcf.get("gateway"), "dcf.gateway")
    if not gateway and isinstance(top.get("provider"), dict):  # faas-cli style files
        gateway = r.string(top["provider"].get("gateway"), "provider.gateway")
    return ConfigFile(functions=functions, gateway=gateway, warnings=r.warnings)


def _parse_function(r: _Reader, name: str, body: Any, root: Path | None) -> FunctionSpec:
    key = f"functions.{name}"
    data = r.mapping(body, key)
    r.unknown_keys(data, f"{key}.", _FUNCTION_KEYS, listed=False)
    for k in data:
        if k in _IGNORED_FUNCTION_KEYS:
            r.warn(f"{key}.{k}", _IGNORED_FUNCTION_KEYS[k])
    runtime = r.string(data.get("runtime"), f"{key}.runtime") or "python"
    if canonical_runtime(runtime) is None:
        raise r.fail(f"{key}.runtime", f"unknown runtime {brief(runtime)} (known: {', '.join(RUNTIMES)})")
    handler_data = r.mapping(data.get("handler"), f"{key}.handler")
    r.unknown_keys(handler_data, f"{key}.handler.", ("dir", "file", "name"))
    handler = HandlerRef(
        dir=r.string(handler_data.get("dir"), f"{key}.handler.dir") or DEFAULT_HANDLER_DIR,
        file=r.string(handler_data.get("file"), f"{key}.handler.file"),
        name=r.string(handler_data.get("name"), f"{key}.handler.name") or DEFAULT_HANDLER_NAME,
    )
    where = PurePosixPath(handler.dir.replace("\\", "/"))
    if where.is_absolute() or ".." in where.parts:
        # The folder is what gets packed, built and deployed: a handler outside it would not travel.
        raise r.fail(f"{key}.handler.dir", f"must be a folder inside the function's folder, got {brief(handler.dir)}")
    if not handler.name.isidentifier():
        raise r.fail(f"{key}.handler.name", f"expected a Python class name, got {brief(handler.name)}")
    if Path(handler.filename).name != handler.filename or not handler.filename.endswith(".py"):
        raise r.fail(f"{key}.handler.file", f"expected a .py file name inside handler.dir, got {brief(handler.file)}")
    build_args = r.string_list(data.get("build_args"), f"{key}.build_args")
    if isinstance(data.get("build_args"), dict):
        build_args = [f"{k}={v}" for k, v in r.string_map(data["build_args"], f"{key}.build_args").items()]
    for i, arg in enumerate(build_args):
        if "=" not in arg or arg.startswith("="):
            raise r.fail(f"{key}.build_args[{i}]", f"expected NAME=VALUE, got {brief(arg)}")
    skip_build = data.get("skip_build", False)
    if not isinstance(skip_build, bool):
        raise r.fail(f"{key}.skip_build", f"expected true or false, got {_kind(skip_build)}")
    secrets = r.secret_names(data.get("secrets"), f"{key}.secrets")
    secrets_as_env: bool | list[str] = data.get("secrets_as_env", False)
    if not isinstance(secrets_as_env, bool):
        secrets_as_env = r.secret_names(secrets_as_env, f"{key}.secrets_as_env")
        for i, secret in enumerate(secrets_as_env):
            if secret not in secrets:
                listed = ", ".join(secrets) or "none"
                raise r.fail(f"{key}.secrets_as_env[{i}]", f"{secret!r} is not one of `secrets:` ({listed}): list "
                             "it there too")
    return FunctionSpec(
        name=name,
        runtime=runtime,
        desc=r.string(data.get("desc"), f"{key}.desc"),
        maintainer=r.string(data.get("maintainer"), f"{key}.maintainer"),
        handler=handler,
        docker_registry=r.string(data.get("docker_registry"), f"{key}.docker_registry"),
        image=r.string(data.get("image"), f"{key}.image"),
        limits=r.resources(data.get("limits"), f"{key}.limits"),
        build_args=build_args,
        environment=r.env_map(data.get("environment"), f"{key}.environment"),
        build_packages=r.string_list(data.get("build_packages"), f"{key}.build_packages"),
        skip_build=skip_build,
        replicas=r.integer(data.get("replicas"), f"{key}.replicas", low=1, high=MAX_REPLICAS, default=1),
        timeout=r.number(data.get("timeout"), f"{key}.timeout", low=0.001, high=7 * 24 * 3600),
        concurrency=r.integer(data.get("concurrency"), f"{key}.concurrency", low=1, high=256, default=1),
        autoscaling=r.autoscaling(data.get("autoscaling"), f"{key}.autoscaling"),
        backend=r.string(data.get("backend"), f"{key}.backend"),
        base_image=r.string(data.get("base_image"), f"{key}.base_image"),
        labels=r.string_map(data.get("labels"), f"{key}.labels"),
        annotations=r.string_map(data.get("annotations"), f"{key}.annotations"),
        secrets=secrets,
        secrets_as_env=secrets_as_env,
        root=root,
    )


def load_config(path: str | Path) -> ConfigFile:
    """Read and validate a config.yaml file."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create one with `dcf function init NAME`)") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    config = parse_config(text, source=str(path), root=path.parent.resolve())
    config.path = path
    return config


# --- writing -----------------------------------------------------------------


def function_to_dict(spec: FunctionSpec) -> dict[str, Any]:
    """The DCF layout of one function; our own keys appear only when they differ from defaults."""
    out: dict[str, Any] = {
        "runtime": spec.runtime,
        "desc": spec.desc,
        "maintainer": spec.maintainer,
        "handler": {"dir": spec.handler.dir, "file": spec.handler.file, "name": spec.handler.name},
        "docker_registry": spec.docker_registry,
        "image": spec.image,
        "limits": spec.limits.as_dcf(),
        "build_args": list(spec.build_args),
    }
    if spec.environment:
        out["environment"] = [f"{k}={v}" for k, v in spec.environment.items()]
    if spec.build_packages:
        out["build_packages"] = list(spec.build_packages)
    if spec.skip_build:
        out["skip_build"] = True
    if spec.replicas != 1:
        out["replicas"] = spec.replicas
    if spec.timeout is not None:
        out["timeout"] = spec.timeout
    if spec.concurrency != 1:
        out["concurrency"] = spec.concurrency
    if spec.autoscaling is not None:
        out["autoscaling"] = spec.autoscaling.as_dict()
    if spec.backend:
        out["backend"] = spec.backend
    if spec.base_image:
        out["base_image"] = spec.base_image
    if spec.labels:
        out["labels"] = dict(spec.labels)
    if spec.annotations:
        out["annotations"] = dict(spec.annotations)
    if spec.secrets:
        out["secrets"] = list(spec.secrets)
    if spec.secrets_as_env:
        out["secrets_as_env"] = spec.secrets_as_env if spec.secrets_as_env is True else list(spec.secrets_as_env)
    return out


def dump_config(config: ConfigFile) -> str:
    """config.yaml text in the key order the DCF CLI writes."""
    data: dict[str, Any] = {"functions": {n: function_to_dict(s) for n, s in config.functions.items()}}
    if config.gateway:
        data["dcf"] = {"gateway": config.gateway}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def write_config(config: ConfigFile, path: str | Path) -> Path:
    """Write `config` to `path` (atomically) and return the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump_config(config), encoding="utf-8")
    tmp.replace(path)
    return path
