"""dcf-jupyter: serverless (GPU) functions from inside Jupyter, on the DCF wire protocol.

    %load_ext dcf_jupyter          # then %%dcf_function NAME cells, %dcf ...
    from dcf_jupyter import call, stream, deploy, function
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Loaded on first use: worker and gateway processes import this package too and
# should not pay for the client, IPython or widgets.
_LAZY = {
    "Client": "client", "call": "client", "stream": "client", "deploy": "client", "delete": "client",
    "logs": "client", "list_functions": "client",
    "function": "session", "Session": "session",
    "FunctionProxy": "proxy",
    "boxes": "display",
}

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dcf_jupyter' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext dcf_jupyter`: register %%dcf_function and %dcf."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext dcf_jupyter`: stop the embedded gateway, if one was started."""
    from .magics import unload

    unload(ipython)
