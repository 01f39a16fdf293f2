"""Creating function folders: `dcf function init` and the notebook magic both write them here."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from .runtimes import RUNTIMES, canonical_runtime
from .spec import ConfigFile, FunctionSpec, validate_name, write_config


def template_text(runtime: str, filename: str) -> str:
    """A file of the runtime's init template (every runtime starts from the python one today)."""
    return (resources.files("dcf_jupyter.definition") / "templates" / "python" / filename).read_text(encoding="utf-8")


def new_spec(name: str, runtime: str = "python", **fields: object) -> FunctionSpec:
    """A FunctionSpec with DCF's defaults for a new function."""
    validate_name(name)
    if canonical_runtime(runtime) is None:
        raise ConfigError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)}; see `dcf runtime list`)")
    return FunctionSpec(name=name, runtime=runtime, image=name, **fields)  # type: ignore[arg-type]


def init_function(
    name: str,
    *,
    runtime: str = "python",
    parent: str | Path = ".",
    config_name: str = "config.yaml",
    gateway: str = "",
    handler_source: str | None = None,
    requirements: list[str] | None = None,
) -> Path:
    """Create `parent/name/` with config.yaml, src/handler.py and requirements.txt; refuse an existing folder."""
    spec = new_spec(name, runtime)
    folder = Path(parent) / name
    if folder.exists():
        raise ConfigError(f"directory {folder} already exists; pick another name or remove it")
    (folder / "src").mkdir(parents=True)
    source = handler_source or template_text(runtime, "handler.py")
    (folder / "src" / "handler.py").write_text(source if source.endswith("\n") else source + "\n", encoding="utf-8")
    reqs = template_text(runtime, "requirements.txt")
    if requirements:
        reqs += "".join(f"{r}\n" for r in requirements)
    (folder / "requirements.txt").write_text(reqs, encoding="utf-8")
    spec.root = folder.resolve()
    write_config(ConfigFile(functions={name: spec}, gateway=gateway), folder / config_name)
    return folder
