"""config.yaml: read, validate and write function specs with DCF's keys.

A file written by the original DCF CLI loads unchanged. Unknown keys are kept
out of the model but reported as warnings; wrong types raise `ConfigError`
naming the file and the key (``config.yaml: functions.echo.limits.gpu: ...``).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ..errors import ConfigError, InvalidArgument, InvalidName, brief
from .cron import cron_problem
from .keys import (
    Assignments,
    Checker,
    Either,
    Flag,
    Integer,
    KeyPath,
    Kind,
    Number,
    Section,
    Text,
    TextList,
    TextMap,
    dump_section,
    key,
    key_paths,
    known_keys,
    nest,
    read_section,
    section_schema,
)
from .reader import Reader
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


def _runtime_problem(text: str) -> str | None:
    if canonical_runtime(text) is not None:
        return None
    return f"unknown runtime {brief(text)} (known: {', '.join(RUNTIMES)}; see `dcf runtime list`)"


def _secret_problem(name: str) -> str | None:
    try:
        validate_secret_name(name)
    except InvalidArgument as exc:
        return str(exc)
    return None


@dataclass
class HandlerRef:
    """Where the Handler lives: `dir` (relative to config.yaml), `file` ('' means handler.py) and class `name`."""

    dir: str = key(DEFAULT_HANDLER_DIR, Text(), help="the folder of the handler file, inside the function's folder",
                   always=True)
    file: str = key("", Text(), help="the handler file in that folder (empty: handler.py)", always=True)
    name: str = key(DEFAULT_HANDLER_NAME, Text(), help="the Handler class's name", always=True)

    @property
    def filename(self) -> str:
        """The handler file name, with DCF's empty default resolved."""
        return self.file or DEFAULT_HANDLER_FILE

    def check(self, c: Checker) -> None:
        """Refuse a handler outside the function's folder, or a name Python cannot import."""
        where = PurePosixPath(self.dir.replace("\\", "/"))
        if where.is_absolute() or ".." in where.parts:
            # The folder is what gets packed, built and deployed: a handler outside it would not travel.
            raise c.fail("dir", f"must be a folder inside the function's folder, got {brief(self.dir)}")
        if not self.name.isidentifier():
            raise c.fail("name", f"expected a Python class name, got {brief(self.name)}")
        if Path(self.filename).name != self.filename or not self.filename.endswith(".py"):
            raise c.fail("file", f"expected a .py file name inside handler.dir, got {brief(self.file)}")


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


@dataclass(frozen=True)
class Gpus(Kind):
    """`limits.gpu`, read with `gpu_type` beside it (DCF's two keys for one request)."""

    def read(self, r: Reader, data: Mapping[str, Any], name: str, key: str) -> Any:
        kind_key = key.rpartition(".")[0] + ".gpu_type" if "." in key else "gpu_type"
        try:
            return GpuRequest.parse(r.string(data.get(name), key), r.string(data.get("gpu_type"), kind_key).strip())
        except ValueError as exc:
            raise r.fail(key, str(exc)) from None

    def dump(self, value: Any) -> Any:
        return str(value)

    def schema(self) -> dict[str, Any]:
        # Named groups are spelt differently by Python and ECMAScript (editors' regexes): plain groups mean the same.
        return {"type": ["string", "number", "null"], "pattern": "^$|" + re.sub(r"\(\?P<\w+>", "(?:", _GPU_RE.pattern)}

    def properties(self, name: str, described: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {name: described, "gpu_type": {"type": "string", "description": "the kind of GPU `gpu:` counts "
                                                                             "(as gpu: KIND:N does)"}}


@dataclass
class Resources:
    """DCF's FunctionResources: `memory` and `cpu` as DCF writes them (empty: not set), `gpu` typed."""

    memory: str = key("", Text(pattern=_MEMORY_RE.pattern, says="a size like '512M' or '2G'", numeric=True),
                      help="memory each replica may use, e.g. 512M or 2G", always=True, flag="--memory",
                      keyword="memory", metavar="SIZE")
    cpu: str = key("", Text(pattern=r"^(\d+(\.\d+)?|\d+m)$", says="a CPU count like '1', '0.5' or '500m'",
                            numeric=True),
                   help="CPUs each replica may use, e.g. 1 or 500m", always=True, flag="--cpu", keyword="cpu")
    gpu: GpuRequest = key(kind=Gpus(), factory=GpuRequest, always=True, flag="--gpu", keyword="gpu",
                          help="GPUs each replica gets: 1, 2, a share of one like 0.5, or KIND:N like H100:1 (its "
                               "image is a CUDA one)")

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


# Ray Serve's defaults, so that one config.yaml means the same on every backend.
DEFAULT_TARGET_ONGOING_REQUESTS = 2.0
DEFAULT_UPSCALE_DELAY_S = 30.0
DEFAULT_DOWNSCALE_DELAY_S = 600.0
_DAY = 24 * 3600.0


@dataclass
class Autoscaling:
    """`autoscaling:` of a function: keep between `min_replicas` (0: none while idle) and `max_replicas` replicas,
    about `target_ongoing_requests` calls in each; the delays are how long load must stay high (low) before
    replicas are added (removed). Unset numbers are Ray Serve's defaults, on every backend."""

    min_replicas: int = key(1, Integer(0, MAX_REPLICAS), always=True, flag="--min-replicas", metavar="N",
                            help="the fewest replicas it runs (0: none while idle, the next call starts one)")
    max_replicas: int = key(1, Integer(1, MAX_REPLICAS), always=True, flag="--max-replicas", metavar="N",
                            required="autoscaling needs the most replicas it may run",
                            help="the most replicas it runs")
    target_ongoing_requests: float | None = key(
        None, Number(0.01, 1e6), flag="--target-ongoing-requests", metavar="N",
        help=f"calls in flight per replica the autoscaler aims for (default {DEFAULT_TARGET_ONGOING_REQUESTS:g}, "
             "as Ray Serve)")
    upscale_delay_s: float | None = key(
        None, Number(0, _DAY), flag="--upscale-delay", metavar="S",
        help=f"seconds load stays high before replicas are added (default {DEFAULT_UPSCALE_DELAY_S:g})")
    downscale_delay_s: float | None = key(
        None, Number(0, _DAY), flag="--downscale-delay", metavar="S",
        help="seconds load stays low (or no call comes) before replicas are removed (default "
             f"{DEFAULT_DOWNSCALE_DELAY_S:g})")

    def check(self, c: Checker) -> None:
        """Refuse a range that holds no count."""
        if self.max_replicas < self.min_replicas:
            raise c.fail("max_replicas", f"is {self.max_replicas}, fewer than {c.name('min_replicas')} "
                                         f"({self.min_replicas})")

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


AUTOSCALING_KEYS = tuple(known_keys(Autoscaling))

# Ray Serve's @serve.batch defaults.
DEFAULT_MAX_BATCH_SIZE = 10
DEFAULT_MAX_WAIT_MS = 10.0
# Calls a function holds beyond those its replicas run: enough that a notebook's loop of calls, a .map or a few
# webcams never meet it, few enough that an overloaded function says so at once instead of every caller waiting
# out its deadline while the gateway holds its request.
DEFAULT_MAX_QUEUED_REQUESTS = 256


@dataclass
class Batching:
    """`batching:` of a function: its Handler takes a list of requests and returns a list of replies, one per
    request in order; calls that arrive together are run as one list of at most `max_batch_size`, waiting at most
    `max_wait_ms` for it to fill (a lone call on an idle replica is not held back)."""

    max_batch_size: int = key(DEFAULT_MAX_BATCH_SIZE, Integer(1, 1024), always=True, flag="--batch", metavar="N",
                              help=f"the most calls in one batch (default {DEFAULT_MAX_BATCH_SIZE}, as Ray Serve)")
    max_wait_ms: float = key(DEFAULT_MAX_WAIT_MS, Number(0, 60_000), always=True, flag="--batch-wait-ms",
                             metavar="MS", help="milliseconds a batch waits to fill under load (default "
                                                f"{DEFAULT_MAX_WAIT_MS:g}, as Ray Serve)")

    @property
    def max_wait_s(self) -> float:
        """max_wait_ms in seconds."""
        return self.max_wait_ms / 1000


@dataclass
class FunctionSpec:
    """One function of a config.yaml; `root` is the folder holding the config file."""

    name: str
    runtime: str = key("python", Text(check=_runtime_problem, choices=tuple(RUNTIMES)), always=True,
                       flag="--runtime", keyword="runtime",
                       help="python, python-gpu (a CUDA image) or tensorflow-gpu; see `dcf runtime list`")
    desc: str = key("", Text(), always=True, help="what it does, in a line")
    maintainer: str = key("", Text(), always=True, help="who looks after it")
    handler: HandlerRef = key(kind=Section(HandlerRef), factory=HandlerRef, always=True,
                              help="where its Handler class lives")
    docker_registry: str = key("", Text(), always=True, help="the registry its image goes to (REGISTRY/NAME)")
    image: str = key("", Text(), always=True, help="the image to build and run (default REGISTRY/NAME, or NAME)")
    limits: Resources = key(kind=Section(Resources), factory=Resources, always=True,
                            help="what each replica gets: memory, cpu, gpu")
    build_args: list[str] = key(kind=Assignments(as_list=True), factory=list, always=True,
                                help="NAME=VALUE arguments of its image build (CUDA, cuDNN and Ubuntu versions of a "
                                     "python-gpu image)")
    environment: dict[str, str] = key(kind=Assignments(), factory=dict,
                                      help="NAME=VALUE environment variables of its replicas")
    build_packages: list[str] = key(kind=TextList(), factory=list, help="system (apt) packages its image gets")
    skip_build: bool = key(False, Flag(), help="deploy `image` as it is, without building it")
    replicas: int = key(1, Integer(1, MAX_REPLICAS), flag="--replicas", keyword="replicas", metavar="N",
                        help="worker replicas it runs (autoscaling: decides instead when it is set)")
    timeout: float | None = key(None, Number(0.001, 7 * _DAY), flag="--timeout", keyword="timeout", metavar="S",
                                help=f"seconds a call may take (default {DEFAULT_CALL_TIMEOUT_S:g})")
    concurrency: int = key(1, Integer(1, 256), flag="--concurrency", keyword="concurrency", metavar="N",
                           help="calls one replica's Handler runs at once, on threads")
    batching: Batching | None = key(None, Section(Batching, optional=True), keyword="batching",
                                    help="run calls that arrive together as one list in the Handler: "
                                         "max_batch_size, max_wait_ms")
    max_queued_requests: int = key(DEFAULT_MAX_QUEUED_REQUESTS, Integer(-1, 1_000_000), flag="--max-queued",
                                   keyword="max_queued_requests", metavar="N",
                                   help="calls it holds beyond those its replicas run before it refuses more at "
                                        f"once (default {DEFAULT_MAX_QUEUED_REQUESTS}; -1: no limit)")
    schedule: str = key("", Text(max_len=200, check=cron_problem), flag="--schedule", keyword="schedule",
                        metavar="CRON", help="run it on this schedule, each run a spawned call: cron's five fields "
                                             "(\"*/5 * * * *\"), or six with seconds first")
    schedule_input: str = key("", Text(), flag="--schedule-input", keyword="schedule_input", metavar="TEXT",
                              help="the request each scheduled run gets (default: empty)")
    autoscaling: Autoscaling | None = key(None, Section(Autoscaling, optional=True), keyword="autoscaling",
                                          help="keep between min_replicas and max_replicas replicas, about "
                                               "target_ongoing_requests calls in each")
    backend: str = key("", Text(choices=("local", "docker", "ray")), flag="--backend", keyword="backend",
                       help="where it runs: local, docker or ray (default: the gateway's)")
    base_image: str = key("", Text(), help="the image its image starts from (default: the runtime's)")
    labels: dict[str, str] = key(kind=TextMap(), factory=dict, help="labels, as Kubernetes keeps them")
    annotations: dict[str, str] = key(kind=TextMap(), factory=dict, help="annotations, as Kubernetes keeps them")
    secrets: list[str] = key(kind=TextList(check=_secret_problem, unique=True), factory=list, flag="--secrets",
                             keyword="secrets", metavar="NAME",
                             help="the gateway's secrets its replicas get, as files in $DCF_SECRETS_DIR/NAME/")
    secrets_as_env: bool | list[str] = key(
        False, Either(TextList(check=_secret_problem, unique=True)),
        help="and as environment variables: true for all of them, or a list of some")
    root: Path | None = None

    @property
    def call_timeout(self) -> float:
        """Seconds a call may take (config.yaml's `timeout`, else DEFAULT_CALL_TIMEOUT_S): the one place it is
        decided, for the gateway and the worker alike."""
        return self.timeout or DEFAULT_CALL_TIMEOUT_S

    @property
    def calls_at_once(self) -> int:
        """Calls one replica takes in at once: a batch per Handler slot (`concurrency`), or one call per slot."""
        return self.concurrency * (self.batching.max_batch_size if self.batching is not None else 1)

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

    def check(self, c: Checker) -> None:
        """Refuse variables of secrets it does not ask for; say that `replicas` is moot under `autoscaling`."""
        if isinstance(self.secrets_as_env, list):
            for i, secret in enumerate(self.secrets_as_env):
                if secret not in self.secrets:
                    listed = ", ".join(self.secrets) or "none"
                    raise c.fail(f"secrets_as_env[{i}]", f"{secret!r} is not one of `secrets:` ({listed}): list it "
                                                         "there too")
        if self.autoscaling is not None and self.replicas != 1:
            c.warn("replicas", f"give either {c.name('replicas')} (a fixed count) or "
                               f"{c.name('autoscaling.min_replicas')}/{c.name('autoscaling.max_replicas')} "
                               "(autoscaled), not both: autoscaling decides")


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

# Keys DCF and faas-style files may carry that nothing here reads, and why.
_IGNORED_FUNCTION_KEYS = {
    "lang": "not used by dcf-jupyter, ignored",
    "constraints": "not used by dcf-jupyter, ignored",
    "requests": "not used by dcf-jupyter, ignored: every backend reserves what `limits:` asks",
}
_FUNCTION_KEYS = frozenset(known_keys(FunctionSpec)) | frozenset(_IGNORED_FUNCTION_KEYS)


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
    r = Reader(source)
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


def _parse_function(r: Reader, name: str, body: Any, root: Path | None) -> FunctionSpec:
    key = f"functions.{name}"
    data = r.mapping(body, key)
    r.unknown_keys(data, f"{key}.", _FUNCTION_KEYS, listed=False)
    for k in data:
        if k in _IGNORED_FUNCTION_KEYS:
            r.warn(f"{key}.{k}", _IGNORED_FUNCTION_KEYS[k])
    known = {k: v for k, v in data.items() if k in _FUNCTION_KEYS and k not in _IGNORED_FUNCTION_KEYS}
    spec: FunctionSpec = read_section(FunctionSpec, r, known, f"{key}.", name=name, root=root)
    return spec


def spec_from_settings(name: str, values: Mapping[str, Any], *, source: str, spelling: Mapping[str, str],
                       root: Path | None = None) -> FunctionSpec:
    """A new function's spec from settings given outside a config.yaml (a magic's flags, `function()`'s keywords),
    keyed by their path (`limits.gpu`), checked as config.yaml is: every sentence names the key as `spelling`
    writes it (`--gpu`), and what would be a warning in a file is refused."""
    validate_name(name)
    reader = Reader(source, spelling, strict=True)
    spec: FunctionSpec = read_section(FunctionSpec, reader, nest({"image": name, **values}), "", name=name, root=root)
    return spec


def flagged_keys() -> list[KeyPath]:
    """The keys `%%dcf_function` offers as flags, in declaration order."""
    return [s for s in key_paths(FunctionSpec) if s.key.flag]


def flag_spelling() -> dict[str, str]:
    """Each key `%%dcf_function` offers as a flag: its path and the flag (`limits.gpu`: `--gpu`)."""
    return {s.path: s.key.flag for s in flagged_keys()}


def keyword_paths() -> dict[str, str]:
    """Each key `dcf_jupyter.function()` takes as a keyword: the keyword and its path (`gpu`: `limits.gpu`)."""
    return {s.key.keyword: s.path for s in key_paths(FunctionSpec) if s.key.keyword}


def keyword_help() -> dict[str, str]:
    """Each keyword of `dcf_jupyter.function()` and what it sets, for its help."""
    return {s.key.keyword: f"{s.key.help} (config.yaml's {s.path})" for s in key_paths(FunctionSpec) if s.key.keyword}


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
    return dump_section(spec)


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


# --- the JSON Schema ---------------------------------------------------------

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")  # shipped, so an editor can complete and check files


def config_schema() -> dict[str, Any]:
    """The JSON Schema of config.yaml, from the same declarations the loader reads (what SCHEMA_PATH holds)."""
    function = section_schema(FunctionSpec)
    for ignored, why in _IGNORED_FUNCTION_KEYS.items():
        function["properties"][ignored] = {"description": why}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "config.yaml of DCF functions (dcf-jupyter)",
        "description": "Functions for `dcf function build/deploy` and the gateway; generated from "
                       "dcf_jupyter/definition/spec.py (`dcf function schema`).",
        "type": "object",
        "properties": {
            "functions": {"type": "object", "minProperties": 1, "description": "the functions, by name",
                          "propertyNames": {"pattern": NAME_RE.pattern, "maxLength": 63},
                          "additionalProperties": function},
            "dcf": {"type": "object", "additionalProperties": False, "properties": {
                "gateway": {"type": "string", "description": "the gateway `dcf` commands use for these functions "
                                                             "(HOST:PORT)"}}},
            "provider": {"type": "object", "description": "faas-cli's section; its gateway is read when dcf: "
                                                          "names none"},
            "version": {"description": "faas-cli's file version, ignored"},
        },
        "required": ["functions"],
        "additionalProperties": False,
    }


def schema_text() -> str:
    """config_schema() as the shipped file holds it."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"
