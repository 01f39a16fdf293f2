"""One exception hierarchy for everything a user can cause: catch `DcfError`."""

from __future__ import annotations


def brief(value: object, limit: int = 80) -> str:
    """repr() of a user-given value for an error message, cut to `limit` characters (names can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DcfError(Exception):
    """Base of every error dcf-jupyter raises on purpose; its message is one readable sentence."""


class ConfigError(DcfError):
    """A config.yaml (or function folder) is missing, malformed or has a wrong value."""


class InvalidName(DcfError, ValueError):
    """A function name that is not a lowercase DNS label."""


class GatewayUnavailable(DcfError):
    """No gateway answers at the address, or it went away during a call."""


class FunctionNotFound(DcfError):
    """The gateway has no function of that name."""


class FunctionExists(DcfError):
    """Deploy of a name that is already deployed (use update or replace)."""


class DeployError(DcfError):
    """The gateway could not start the function (bad folder, Handler failed to load...)."""


class InvalidArgument(DcfError):
    """The gateway rejected the request's arguments."""


class FunctionError(DcfError):
    """The function's handler raised, or its worker failed, while serving a call.

    `code` is the gRPC status name (e.g. "INTERNAL", "INVALID_ARGUMENT",
    "UNAVAILABLE"); `remote_traceback` is the handler's traceback text when the
    worker sent one.
    """

    def __init__(self, message: str, *, code: str = "INTERNAL", remote_traceback: str = "", function: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.remote_traceback = remote_traceback
        self.function = function


class Unauthenticated(DcfError):
    """The gateway wants a token this client did not send (or sent wrong)."""
