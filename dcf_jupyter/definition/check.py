"""What `dcf function build` does for the local backend: check everything a deploy would trip over."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .requirements import NODEPS_REQUIREMENTS, missing_requirements, read_requirements
from .source import iter_source_files, pack_folder
from .spec import FunctionSpec


@dataclass
class CheckReport:
    """The outcome of checking one function folder."""

    spec: FunctionSpec
    files: list[Path] = field(default_factory=list)
    packed_bytes: int = 0
    requirements: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _own_yield(function: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Yield | ast.YieldFrom | None:
    """The first `yield` of `function` itself (not of a function or class defined in it), if any."""
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return None


def _batched_generator(tree: ast.Module, filename: str, class_name: str, line_offset: int) -> ConfigError | None:
    """Why a batched Handler cannot be a generator, when its __call__ yields."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for method in node.body:
                if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and method.name == "__call__" and \
                        (found := _own_yield(method)) is not None:
                    return ConfigError(f"{filename}, line {found.lineno + line_offset}: {class_name}.__call__ "
                                       "yields, but with `batching:` it takes a list of requests and returns a list "
                                       "of replies, one each (a generator's items cannot be batched): return a list, "
                                       "or remove `batching:`")
    return None


def check_handler_source(source: str, filename: str, class_name: str, *, line_offset: int = 0,
                         batched: bool = False) -> None:
    """ConfigError if `source` does not parse or defines no `class_name` at top level, or when `batched`, if its
    __call__ is a generator (nothing is executed).

    Line numbers in the message are shifted by `line_offset` (a cell's magic line comes before the source).
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        line = (exc.lineno or 0) + line_offset
        shown = f"\n    {exc.text.rstrip()}" if exc.text and exc.text.strip() else ""
        raise ConfigError(f"{filename}, line {line}: syntax error: {exc.msg}{shown}") from None
    if class_name not in _top_level_names(tree):
        raise ConfigError(f"{filename} defines no {class_name!r}; "
                          f"write `class {class_name}:` with a __call__(self, req)")
    if batched and (refused := _batched_generator(tree, filename, class_name, line_offset)) is not None:
        raise refused


def check_handler(spec: FunctionSpec) -> None:
    """ConfigError unless the function's handler file exists, parses and defines its Handler (run by build
    and, before uploading anything, by deploy)."""
    if spec.root is None:
        raise ConfigError(f"{spec.name}: no function folder")
    path = spec.handler_path
    if not path.is_file():
        shown = path.relative_to(spec.root) if path.is_relative_to(spec.root) else path
        raise ConfigError(f"functions.{spec.name}.handler: no handler file at {shown} (set handler.dir / handler.file)")
    check_handler_source(path.read_text(encoding="utf-8"), str(path.relative_to(spec.root)), spec.handler.name,
                         batched=spec.batching is not None)


def check_function(spec: FunctionSpec, *, max_bytes: int) -> CheckReport:
    """Check a function folder without running it: handler file, its syntax, requirements, packed size."""
    check_handler(spec)
    assert spec.root is not None
    requirements = read_requirements(spec.requirements_path)
    requirements += read_requirements(spec.requirements_path.with_name(NODEPS_REQUIREMENTS))
    packed = pack_folder(spec.root, limit=max_bytes)
    return CheckReport(
        spec=spec,
        files=iter_source_files(spec.root),
        packed_bytes=len(packed),
        requirements=requirements,
        missing=missing_requirements(requirements),
    )
