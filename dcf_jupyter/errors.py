"""One exception hierarchy for everything a user can cause: catch `DcfError`.

Every error is one readable sentence (`str(err)`) plus, where there is more to read, one `detail`
text: the function's traceback, or the last lines of a build. `explain()` is how the CLI and the
notebook show them, the same way: the sentence first, then the detail when it helps.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol.names import Status

__all__ = [  # what callers may catch; `brief`, `explain` and `Explanation` serve the CLI and the magics
    "BuildError",
    "ClientTimeout",
    "ConfigError",
    "DcfError",
    "DeployError",
    "DockerUnavailable",
    "ForeignGateway",
    "FunctionError",
    "FunctionExists",
    "FunctionNotFound",
    "GatewayStartError",
    "GatewayUnavailable",
    "HandlerLoadError",
    "InstallFailed",
    "InvalidArgument",
    "InvalidName",
    "Overloaded",
    "Unauthenticated",
]


PIP_SAID = "pip said:"  # a detail that starts with this line is pip's output, shown under that title


def brief(value: object, limit: int = 80) -> str:
    """repr() of a user-given value for an error message, cut to `limit` characters (names can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DcfError(Exception):
    """Base of every error dcf-jupyter raises on purpose; its message is one readable sentence.

    `detail` holds what a sentence cannot (a traceback, a build log's tail); `function` names the
    function the error is about, when there is one.
    """

    detail_title = "Details"

    def __init__(self, message: str = "", *, detail: str = "", function: str = "") -> None:
        super().__init__(message)
        self.detail = detail
        self.function = function


class ConfigError(DcfError):
    """A config.yaml (or function folder) is missing, malformed or has a wrong value."""


class InstallFailed(ConfigError):
    """pip could not install a function's requirements: the sentence says which and why; `detail` holds pip's
    last lines, under "pip said:"."""


class DockerUnavailable(DcfError):
    """No Docker daemon answers, or the docker SDK is not installed."""


class InvalidName(DcfError, ValueError):
    """A function name that is not a lowercase DNS label."""


class GatewayUnavailable(DcfError):
    """No gateway answers at the address, or it went away during a call."""


class ForeignGateway(DcfError):
    """The gateway at an address of this machine belongs to another user: nothing (no token, no code, no data)
    was sent to it. `uid` is its owner's."""

    def __init__(self, message: str, *, uid: int) -> None:
        super().__init__(message)
        self.uid = uid


class GatewayStartError(DcfError):
    """A gateway could not start (port taken, state dir in use...)."""


class FunctionNotFound(DcfError):
    """The gateway has no function of that name."""


class FunctionExists(DcfError):
    """Deploy of a name that is already deployed (use update or replace)."""


class DeployError(DcfError):
    """The gateway could not start the function (bad folder, Handler failed to load...)."""

    detail_title = "Traceback from the function"


class InvalidArgument(DcfError):
    """The gateway rejected the request's arguments."""


class HandlerLoadError(DcfError):
    """The handler file could not be imported, has no Handler, or Handler() raised."""

    detail_title = "Traceback from the function"


class BuildError(DcfError):
    """An image build or push failed; `detail` holds the build's last lines."""

    detail_title = "Last lines of the build"


class FunctionError(DcfError):
    """The function's handler raised, or its worker failed, while serving a call.

    `code` is the gRPC status name (e.g. "INTERNAL", "INVALID_ARGUMENT", "UNAVAILABLE"); `detail` is
    the handler's traceback text when the worker sent one.
    """

    detail_title = "Traceback from the function"

    def __init__(self, message: str, *, code: str = Status.INTERNAL.name, detail: str = "", function: str = "") -> None:
        super().__init__(message, detail=detail, function=function)
        self.code = code

    @property
    def is_bad_input(self) -> bool:
        """The handler raised ValueError: its way of saying the request was wrong, not that it broke."""
        return self.code == Status.INVALID_ARGUMENT.name


class Overloaded(DcfError):
    """The function's queue was full (its max_queued_requests): the call was refused at once, nothing ran; trying
    again after `retry_after` seconds may succeed (`retries=` does that)."""

    def __init__(self, message: str, *, retry_after: float = 1.0, function: str = "") -> None:
        super().__init__(message, function=function)
        self.retry_after = retry_after


class ClientTimeout(DcfError, TimeoutError):
    """The caller gave up: no reply came within the timeout the call was given (the function's own `timeout`,
    which ends the call on the gateway's side, is a FunctionError with code DEADLINE_EXCEEDED instead)."""


class Unauthenticated(DcfError):
    """The gateway wants a token this client did not send (or sent wrong)."""


@dataclass(frozen=True)
class Explanation:
    """How to show an error: its sentence, then the detail (if any is worth showing) under a title."""

    sentence: str
    detail: str = ""
    title: str = ""
    hint: str = ""


def explain(error: DcfError, *, verbose: bool = False, hint_verbose: str = "-v") -> Explanation:
    """The sentence of `error` and the detail worth showing: a ValueError's traceback (bad input, said by
    the sentence) only when `verbose`; every other traceback or build log always."""
    sentence = f"{error} [{error.code}]" if isinstance(error, FunctionError) else str(error)
    detail = error.detail.strip()
    if not detail:
        return Explanation(sentence)
    if isinstance(error, FunctionError) and error.is_bad_input and not verbose:
        return Explanation(sentence, hint=f"(the function's traceback: add {hint_verbose}; its log has it too)")
    heading, _, rest = detail.partition("\n")
    if heading == PIP_SAID:  # pip's output, not a traceback, whichever error carries it
        return Explanation(sentence, rest.rstrip(), heading.rstrip(":"))
    body = detail.split("Traceback (most recent call last):\n", 1)[-1] if "Traceback" in error.detail_title else detail
    return Explanation(sentence, body.rstrip(), error.detail_title)
