"""The one Python API over gateways, used by the CLI, the magics, the widgets and your code.

    from dcf_jupyter import client
    client.call("hello-dcf", b"hi")                 # module-level: the resolved gateway, shared clients
    with client.Client("127.0.0.1:32222") as c:     # an explicit connection
        c.call_reply("hello-dcf", b"hi")
"""

from ._api import (
    call,
    delete,
    deploy,
    get_client,
    list_functions,
    logs,
    stream,
)
from ._calls import CallStatus, FunctionCall
from ._core import Client, DeployResult, FunctionInfo, ReplicaGpus, SecretInfo
from ._replies import Reply, Result

__all__ = [
    "CallStatus",
    "Client",
    "DeployResult",
    "FunctionCall",
    "FunctionInfo",
    "ReplicaGpus",
    "Reply",
    "Result",
    "SecretInfo",
    "call",
    "delete",
    "deploy",
    "get_client",
    "list_functions",
    "logs",
    "stream",
]
