"""dcf-jupyter: serverless (GPU) functions from inside Jupyter, on the DCF wire protocol."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The client API is loaded on first use: worker and gateway processes import this
# package too and should not pay for what they do not use.
_CLIENT_API = ("Client", "call", "stream", "deploy", "delete", "logs", "list_functions")

__all__ = ["__version__", *_CLIENT_API]


def __getattr__(name: str) -> Any:
    if name in _CLIENT_API:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'dcf_jupyter' has no attribute {name!r}")
