"""FunctionProxy: a deployed function as a Python callable, `hello_dcf(b"hi")`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from ..client import Client, DeployResult, FunctionCall, FunctionInfo, Reply
from ..errors import FunctionNotFound
from ._display import as_result


class Session(Protocol):
    """What a proxy needs of its session (notebook/_session.py's, which makes the proxies)."""

    def client(self) -> Client:
        """The client of the session's gateway."""
        ...


class LogText(str):
    """Log text that prints as itself (not as a quoted repr) when it is a cell's result."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self) if self else "(empty log)")


def python_name(function_name: str) -> str:
    """The variable a function is bound to: hyphens become underscores ('hello-dcf' -> 'hello_dcf')."""
    name = function_name.replace("-", "_")
    return name if name.isidentifier() else f"fn_{name}"


class FunctionProxy:
    """Calls, streams to and manages one function through its session's gateway."""

    def __init__(self, session: Session, name: str, folder: Path | None = None, line_offset: int = 0,
                 bound_as: str | None = None) -> None:
        self.session = session
        self.name = name
        self.folder = folder
        self.bound_as = bound_as  # the variable %%dcf_function bound it to, if it was
        # Handler line N is line N + line_offset of the cell it came from (for readable tracebacks).
        self.line_offset = line_offset

    def __call__(self, data: Any = b"", *, timeout: float | None = None, retries: int = 0) -> Any:
        """Call the function once; the reply as text, bytes or parsed JSON, displayed richly in notebooks;
        `retries`: tries again that many times, backing off, when its queue is full."""
        return as_result(self.reply(data, timeout=timeout, retries=retries), request=data)

    def reply(self, data: Any = b"", *, timeout: float | None = None, retries: int = 0) -> Reply:
        """Call once and return the raw Reply (bytes and content type)."""
        try:
            return self.session.client().call_reply(self.name, data, timeout=timeout, retries=retries)
        except FunctionNotFound as exc:
            raise self._not_deployed(exc) from None

    def _not_deployed(self, exc: FunctionNotFound) -> FunctionNotFound:
        """The gateway's sentence, and how to deploy the function from its folder."""
        if self.folder is None:
            return exc
        return FunctionNotFound(f"{exc}; `{self.bound_as or python_name(self.name)}.deploy()` deploys it from its "
                                f"folder {self.folder}", function=self.name)

    def stream(self, inputs: Iterable[Any], *, timeout: float | None = None) -> Iterator[bytes]:
        """Stream inputs through the function (DCF's Invokes): one reply per input, in order."""
        return self.session.client().stream(self.name, inputs, timeout=timeout)

    def map(self, inputs: Iterable[Any], *, ordered: bool = True, return_exceptions: bool = False,
            retries: int = 0, timeout: float | None = None, progress: bool | None = None) -> Iterator[Any]:
        """Call the function once per input, spread over its replicas, with a progress bar; a generator of the
        results (`list(f.map(photos))`), in input order unless `ordered=False` (see Client.map)."""
        try:
            yield from self.session.client().map(self.name, inputs, ordered=ordered,
                                                 return_exceptions=return_exceptions, retries=retries,
                                                 timeout=timeout, progress=progress)
        except FunctionNotFound as exc:
            raise self._not_deployed(exc) from None

    def spawn(self, data: Any = b"", *, callback_url: str = "") -> FunctionCall:
        """Start one call the gateway runs on its own and keeps: returns at once; `.get()` its result later,
        after a kernel restart too (FunctionCall.from_id(id), `%dcf result ID`)."""
        try:
            return self.session.client().spawn(self.name, data, callback_url=callback_url)
        except FunctionNotFound as exc:
            raise self._not_deployed(exc) from None

    def spawn_map(self, inputs: Iterable[Any], *, retries: int = 0, callback_url: str = "") -> FunctionCall:
        """A whole dataset as one spawned call: `.get()` gives the results in input order."""
        try:
            return self.session.client().spawn_map(self.name, inputs, retries=retries, callback_url=callback_url)
        except FunctionNotFound as exc:
            raise self._not_deployed(exc) from None

    def call_stream(self, data: Any = b"", *, timeout: float | None = None) -> Iterator[Any]:
        """One call whose handler yields several replies (server streaming)."""
        try:
            for reply in self.session.client().call_stream(self.name, data, timeout=timeout):
                yield as_result(reply, request=data)
        except FunctionNotFound as exc:
            raise self._not_deployed(exc) from None

    def logs(self, lines: int = 200) -> LogText:
        """The function's recent log (its workers' output and handler tracebacks)."""
        return LogText(self.session.client().logs(self.name, lines))

    def scale(self, replicas: int) -> FunctionInfo:
        """Run `replicas` replicas; how the function stands now."""
        return self.session.client().scale(self.name, replicas)

    def delete(self) -> None:
        """Stop and remove the function from the gateway (its folder stays)."""
        self.session.client().delete(self.name)

    def deploy(self) -> DeployResult:
        """Deploy (or update) the function from its folder."""
        if self.folder is None:
            raise ValueError(f"{self.name} has no folder to deploy from")
        return self.session.client().deploy(self.folder)

    @property
    def info(self) -> FunctionInfo:
        """Status, replicas and invocation count as the gateway reports them."""
        return self.session.client().get(self.name)

    def __repr__(self) -> str:
        where = f" from {self.folder}" if self.folder else ""
        call = f"{self.bound_as}(data)" if self.bound_as else "it with (data)"
        return f"<DCF function {self.name!r}{where}: call {call}>"
