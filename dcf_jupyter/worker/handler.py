"""The handler contract: `Request`, loading a `Handler` from a function folder, encoding what it returns.

A handler is DCF's::

    class Handler:
        def __init__(self): ...          # once per worker
        def __call__(self, req): ...     # per request; req.input is the raw bytes

It may return `str`, `bytes`, a JSON-serialisable object, or a generator of those
(several replies). A plain function named like the class works too.
"""

from __future__ import annotations

import base64
import collections.abc
import contextlib
import importlib.util
import json
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HandlerLoadError
from ..protocol.names import BINARY, JSON, TEXT
from .gpu_share import keep_frameworks_in_share


@dataclass(frozen=True)
class Request:
    """One call to a handler: `input` is the request's raw bytes."""

    input: bytes
    service: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The input decoded as UTF-8 (undecodable bytes replaced)."""
        return self.input.decode("utf-8", "replace")

    def json(self) -> Any:
        """The input parsed as JSON (ValueError, hence INVALID_ARGUMENT, if it is not)."""
        return json.loads(self.input)


HandlerCallable = Callable[[Request], Any]


def load_handler(handler_dir: str | Path, file: str = "handler.py", name: str = "Handler") -> HandlerCallable:
    """Import `file` from `handler_dir`, build `name()` once and return the callable to serve with."""
    handler_dir = Path(handler_dir).resolve()
    path = handler_dir / file
    if not path.is_file():
        raise HandlerLoadError(f"no handler file at {path}")
    keep_frameworks_in_share()
    # The folder goes first on sys.path so a handler can import its neighbours
    # (DCF's SSD example handler imports models/ssd/predict.py that way).
    if str(handler_dir) not in sys.path:
        sys.path.insert(0, str(handler_dir))
    module_name = path.stem if path.stem.isidentifier() else "handler"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        where = f"{path.name}, line {exc.lineno}" if exc.lineno else path.name
        raise HandlerLoadError(f"syntax error in {where}: {exc.msg}", detail=format_user_traceback(exc)) from None
    except BaseException as exc:  # noqa: BLE001 - any import failure is the user's to read
        raise HandlerLoadError(
            f"importing {path.name} failed: {type(exc).__name__}: {exc}", detail=format_user_traceback(exc)
        ) from None
    target = getattr(module, name, None)
    if target is None:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name)
        hint = f" (it defines: {', '.join(found)})" if found else ""
        raise HandlerLoadError(f"{path.name} defines no {name!r}{hint}; "
                               f"write `class {name}:` with a __call__(self, req)")
    if isinstance(target, type):
        try:
            instance = target()
        except BaseException as exc:  # noqa: BLE001 - whatever Handler() raises is the user's to read
            raise HandlerLoadError(
                f"{name}() raised {type(exc).__name__}: {exc}", detail=format_user_traceback(exc)
            ) from None
        if not callable(instance):
            raise HandlerLoadError(f"{name} has no __call__(self, req) method")
        return instance
    if callable(target):
        return target
    raise HandlerLoadError(f"{name} in {path.name} is a {type(target).__name__}, not a class or function")


_function_root: Path | None = None  # the folder this worker process serves (one function per process)


def serve_function_from(root: Path) -> None:
    """Say which function folder this process serves: its tracebacks name files relative to it."""
    global _function_root
    _function_root = root.resolve()


def _as_written(filename: str) -> str:
    """A traceback's file as the user knows it: src/handler.py, not the copy a gateway or a node unpacked."""
    if _function_root is not None:
        with contextlib.suppress(ValueError):
            return Path(filename).resolve().relative_to(_function_root).as_posix()
    return filename


def format_user_traceback(exc: BaseException) -> str:
    """The traceback without dcf-jupyter's own frames, its files relative to the function folder: what the user
    wrote is what they need."""
    tb = traceback.TracebackException.from_exception(exc)
    frames = [f for f in tb.stack if "dcf_jupyter" not in Path(f.filename).parts and "<frozen" not in f.filename]
    for frame in frames:
        frame.filename = _as_written(frame.filename)
    tb.stack = traceback.StackSummary.from_list(frames)
    if isinstance(exc, SyntaxError) and tb.filename:
        tb.filename = _as_written(tb.filename)
    return "".join(tb.format())


# --- results -------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """numpy scalars/arrays and other common types that json cannot write by itself."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_result(value: Any) -> tuple[str, bytes]:
    """A handler's return value as (content type, payload bytes)."""
    if isinstance(value, str):
        return TEXT, value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BINARY, bytes(value)
    if value is None:
        return TEXT, b""
    try:
        return JSON, json.dumps(value, default=_json_default, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the handler returned a {type(value).__name__}, which is not str, bytes or JSON-serialisable ({exc})"
        ) from None


def is_stream(value: Any) -> bool:
    """True for generators and iterators (several replies); lists, str and bytes are single replies."""
    return isinstance(value, (types.GeneratorType, collections.abc.Iterator))


def iter_results(value: Any) -> Iterator[tuple[str, bytes]]:
    """Each item of a streaming result, encoded."""
    for item in value:
        yield encode_result(item)


def collect_results(items: Iterable[Any]) -> tuple[str, bytes]:
    """A streaming result folded into one reply: text and bytes are joined, anything else becomes a JSON list."""
    values = list(items)
    if all(isinstance(v, str) for v in values):
        return TEXT, "".join(values).encode("utf-8")
    if all(isinstance(v, (bytes, bytearray, memoryview)) for v in values):
        return BINARY, b"".join(bytes(v) for v in values)
    return encode_result(values)


def as_text(content_type: str, payload: bytes) -> str:
    """A reply for DCF's string-typed Message.Msg: text as is, binary as base64 when it is not UTF-8."""
    if content_type == BINARY:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(payload).decode("ascii")
    return payload.decode("utf-8", "replace")
