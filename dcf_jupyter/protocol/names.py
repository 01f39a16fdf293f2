"""The names on the wire, defined once: the service, its method paths, metadata keys, status codes,
content types. Importing this loads neither grpc nor protobuf (workers use it on their lean path)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

SERVICE = "pb.Gateway"  # DCF's `package pb; service Gateway`


def method(name: str) -> str:
    """The full gRPC method path of an RPC of the Gateway service: method("Invoke") -> "/pb.Gateway/Invoke"."""
    return f"/{SERVICE}/{name}"


INVOKE = method("Invoke")
INVOKE_BYTES = method("InvokeBytes")  # ours: the reply as bytes (DCF's Invoke returns a string)
INVOKE_STREAM = method("InvokeStream")  # ours: one request, a reply per item a generator handler yields
INVOKES = method("Invokes")
HEALTH_CHECK = method("HealthCheck")
HEALTHY = "OK"  # HealthCheck's reply

# Trailing metadata of a failed call.
ORIGIN_KEY = "dcf-origin"  # "function" when the function failed, "gateway" when the gateway refused
TRACEBACK_KEY = "dcf-traceback-bin"  # the handler's traceback (UTF-8; -bin: gRPC carries it as bytes)
BATCH_KEY = "dcf-batch"  # a batched worker's reply: the size of the batch it ran in (on one reply of each batch)
RETRY_AFTER_KEY = "retry-after"  # seconds after which a refused call may be tried again (HTTP's Retry-After)
ORIGIN_FUNCTION, ORIGIN_GATEWAY = "function", "gateway"
# Function annotation of a function another gateway deployed on a shared cluster (listed, not managed here).
DEPLOYED_BY = "dcf.deployed-by"
# Function annotation our clients add to a deploy: the folder it came from (so a notebook can tell a function it
# would replace from its own).
SOURCE_FOLDER = "dcf.folder"
# Request metadata: `authorization: Bearer TOKEN` when the gateway wants a token.
AUTHORIZATION_KEY = "authorization"
BEARER = "bearer "  # compared case-insensitively, as HTTP's scheme names are


# What a replica finds in its environment: its secrets' folder ($DCF_SECRETS_DIR/NAME/KEY), and how it reaches the
# gateway that runs it to call other functions (dcf_jupyter.mesh): an address and a file holding the gateway's
# invoke-only replica credential.
ENV_SECRETS_DIR = "DCF_SECRETS_DIR"
ENV_MESH_ADDRESS = "DCF_MESH_ADDRESS"
ENV_MESH_TOKEN_FILE = "DCF_MESH_TOKEN_FILE"
# A chain of function-to-function calls deeper than this is refused (a function calling itself by mistake).
MAX_CALL_DEPTH = 16


def authorization(token: str) -> tuple[str, str]:
    """The metadata entry that carries `token`."""
    return AUTHORIZATION_KEY, f"Bearer {token}"


class Status(enum.IntEnum):
    """gRPC status codes by their numbers (grpc.StatusCode's values), for code that must not import grpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def grpc_status(code: int) -> grpc.StatusCode:
    """The grpc.StatusCode for a status number (INTERNAL for an unknown one); imports grpc."""
    import grpc

    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.INTERNAL)


# Content types of a reply (pb.Messages carries one beside the bytes).
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
BINARY = "application/octet-stream"
