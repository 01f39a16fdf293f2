"""dcf-jupyter: serverless (GPU) functions from inside Jupyter, on the DCF wire protocol.

    %load_ext dcf_jupyter          # then %%dcf_function NAME cells, %dcf ...
    from dcf_jupyter import call, stream, deploy, function

The public API is what `__all__` lists here and in `dcf_jupyter.client`, `dcf_jupyter.widgets`,
`dcf_jupyter.errors`, `dcf_jupyter.mesh` and `dcf_jupyter.secrets`; every other module is implementation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BuildError,
    ClientTimeout,
    ConfigError,
    DcfError,
    DeployError,
    FunctionError,
    FunctionExists,
    FunctionNotFound,
    GatewayUnavailable,
    InvalidArgument,
    Overloaded,
    Unauthenticated,
)

if TYPE_CHECKING:  # what the lazy loader below hands out, as type checkers should see it
    from .client import (
        CallStatus,
        Client,
        DeployResult,
        FunctionCall,
        FunctionInfo,
        Reply,
        Result,
        call,
        delete,
        deploy,
        get_client,
        list_functions,
        logs,
        stream,
    )
    from .notebook._display import boxes
    from .notebook._function import FunctionProxy
    from .notebook._scratch import scratch_dir
    from .notebook._session import function

# Loaded on first use: worker and gateway processes import this package too and
# should not pay for the client, IPython or widgets.
_LAZY = {
    "Client": "client", "DeployResult": "client", "FunctionCall": "client", "CallStatus": "client",
    "FunctionInfo": "client", "Reply": "client", "Result": "client", "get_client": "client",
    "call": "client", "stream": "client", "deploy": "client", "delete": "client", "logs": "client",
    "list_functions": "client",
    "function": "notebook._session",
    "FunctionProxy": "notebook._function",
    "boxes": "notebook._display",
    "scratch_dir": "notebook._scratch",
}

__all__ = [
    "BuildError",
    "CallStatus",
    "Client",
    "ClientTimeout",
    "ConfigError",
    "DcfError",
    "DeployError",
    "DeployResult",
    "FunctionCall",
    "FunctionError",
    "FunctionExists",
    "FunctionInfo",
    "FunctionNotFound",
    "FunctionProxy",
    "GatewayUnavailable",
    "InvalidArgument",
    "Overloaded",
    "Reply",
    "Result",
    "Unauthenticated",
    "__version__",
    "boxes",
    "call",
    "delete",
    "deploy",
    "function",
    "get_client",
    "list_functions",
    "load_ipython_extension",
    "logs",
    "scratch_dir",
    "stream",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dcf_jupyter' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext dcf_jupyter`: register %%dcf_function and %dcf (with `%dcf stream`'s widgets)."""
    from .notebook._magics import load
    from .widgets._launch import stream_widget

    load(ipython, stream_widget=stream_widget)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext dcf_jupyter`: stop the embedded gateway, if one was started."""
    from .notebook._magics import unload

    unload(ipython)
