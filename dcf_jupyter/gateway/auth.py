"""Who may do what: bearer-token checks on gRPC metadata.

Every gateway has a token (the one given, else its owner's: credentials.py), and by default every RPC but
HealthCheck needs it, loopback included, as Jupyter's servers have since 4.3: on a shared machine every other
account is a stranger. HealthCheck is open to all (liveness probes carry no credentials). A gateway on a loopback
address started with --open-loopback also opens calling (Invoke, InvokeBytes, InvokeStream, Invokes, Map; not
Spawn and its GetCall, CallResults, CancelCall, which keep data and may send it elsewhere) and the read-only
List, GetMeta and Info (and /metrics), so DCF's original plaintext clients, which send no token, work
unchanged. Everything else needs the token on every address: what runs code (Deploy, Update), changes what runs
(Delete, ReplicaUpdate), shows what functions printed (GetLog), holds secrets (CreateSecret, ListSecrets,
DeleteSecret), and any RPC added later unless it is listed here.

Replicas get a second credential, the gateway's replica token (`dcf_jupyter.mesh` sends it): it may invoke
functions and nothing else, so a replica's code, or whatever it leaks to, cannot deploy, delete, read logs or
secrets with it. Replicas on a cluster get a credential of their function's instead (`function_credential`: the
function's name and an HMAC of it under the replica token): it may invoke too, and fetch that function's
secrets (ReplicaSecrets), no other's.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import grpc

from ..host.ports import is_loopback
from ..protocol.names import AUTHORIZATION_KEY, BEARER

__all__ = [
    "CALL_RPCS",
    "INVOKE_RPCS",
    "LOOPBACK_OPEN_RPCS",
    "OPEN_LOOPBACK_FLAG",
    "OPEN_RPCS",
    "REPLICA_SECRETS_RPC",
    "SPAWN_RPCS",
    "TokenGuard",
    "TokenPolicy",
    "bearer_token",
    "function_credential",
    "is_loopback",
    "server_credentials",
]

OPEN_RPCS = frozenset({"HealthCheck"})
CALL_RPCS = frozenset({"Invoke", "InvokeBytes", "InvokeStream", "Invokes", "Map"})
# Spawned calls keep their inputs on the owner's disk and may POST results anywhere from the owner's account:
# a replica's credential may spawn (a function starting a job), --open-loopback's anonymous callers may not.
SPAWN_RPCS = frozenset({"Spawn", "GetCall", "CallResults", "CancelCall"})
INVOKE_RPCS = CALL_RPCS | SPAWN_RPCS
LOOPBACK_OPEN_RPCS = CALL_RPCS | {"List", "GetMeta", "Info"}
REPLICA_SECRETS_RPC = "ReplicaSecrets"
OPEN_LOOPBACK_FLAG = "--open-loopback"


def function_credential(replica_token: str, function: str) -> str:
    """The credential of `function`'s replicas on a cluster: NAME.HMAC (function names hold no '.')."""
    digest = hmac.new(replica_token.encode(), function.encode(), hashlib.sha256).hexdigest()
    return f"{function}.{digest}"


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer TOKEN` metadata entry, if any."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY and isinstance(value, str) and value[: len(BEARER)].lower() == BEARER:
            return value[len(BEARER):].strip()
    return None


class TokenPolicy:
    """Which RPCs need the token, and which of those the replica token may call; tokens are compared in constant
    time."""

    def __init__(self, token: str, open_loopback: bool = False, replica_token: str = "", *,
                 loopback: bool = True) -> None:
        if not token:
            raise ValueError("a token policy needs a token")
        self._token = token.encode()
        self._replica_token = replica_token.encode()
        self.open = OPEN_RPCS | (LOOPBACK_OPEN_RPCS if loopback and open_loopback else frozenset())
        self._could_open = loopback and not open_loopback  # a tokenless client refused is told how to open it

    def needs_token(self, method: str) -> bool:
        """True when `method` (e.g. "/pb.Gateway/Deploy") may only be called with the token."""
        return method.rsplit("/", 1)[-1] not in self.open

    def allows(self, method: str, metadata: Any) -> bool:
        """True when the call may go ahead."""
        return not self.refusal(method, metadata)

    def credential_function(self, metadata: Any) -> str | None:
        """The function whose replica credential the call carries (None: none, or not a valid one)."""
        return self._function_of(bearer_token(metadata))

    def _function_of(self, given: str | None) -> str | None:
        if not given or "." not in given or not self._replica_token:
            return None
        function = given.split(".", 1)[0]
        expected = function_credential(self._replica_token.decode(), function)
        return function if hmac.compare_digest(given.encode(), expected.encode()) else None

    def refusal(self, method: str, metadata: Any, sent_as: str = "'authorization: Bearer TOKEN' metadata") -> str:
        """Why the call may not go ahead, in a sentence ('' when it may); `sent_as` says how a client sends the
        token."""
        if not self.needs_token(method):
            return ""
        name = method.rsplit("/", 1)[-1]
        given = bearer_token(metadata)
        if given is not None:
            if hmac.compare_digest(given.encode(), self._token):
                return ""
            if self._replica_token and hmac.compare_digest(given.encode(), self._replica_token):
                allowed = INVOKE_RPCS
            elif self._function_of(given) is not None:
                allowed = INVOKE_RPCS | {REPLICA_SECRETS_RPC}
            else:
                allowed = None
            if allowed is not None:
                return "" if name in allowed else f"{name}: a replica's credential may only call functions"
        said = (f"{name} needs the gateway's token, which its owner's dcf tools send by themselves; another client "
                f"sends it as {sent_as} (dcf: $DCF_TOKEN)")
        if given is None and self._could_open and name in LOOPBACK_OPEN_RPCS:
            said += (f". DCF's original clients send none: the gateway's owner lets this machine's clients call "
                     f"functions and list them without it by starting the gateway with {OPEN_LOOPBACK_FLAG}")
        return said


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler that fails with UNAUTHENTICATED without reading the request: it takes the request as a stream it
    never iterates (the arity a handler declares is the server's own business; the client sees the same status),
    so a refused message, however large, is never received in full or held."""
    async def abort(_requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def abort_streaming(_requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator, as a streaming handler must be

    if handler.unary_unary or handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, response_serializer=handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(abort_streaming, response_serializer=handler.response_serializer)


class TokenGuard(grpc.GenericRpcHandler):
    """The gateway's RPC handlers, each call checked against the policy as its handler is looked up: a call that
    needs the token and lacks it gets a handler that fails with UNAUTHENTICATED. (A server interceptor would do
    the same with a coroutine per call; this is a set lookup on the hot path.)"""

    def __init__(self, handlers: grpc.GenericRpcHandler, policy: TokenPolicy) -> None:
        self.handlers = handlers
        self.policy = policy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self.handlers.service(details)
        if handler is None:
            return None
        refused = self.policy.refusal(details.method, details.invocation_metadata)
        return _deny(handler, refused) if refused else handler


def server_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials:
    """TLS credentials from PEM files, with errors that name the file."""
    pems = []
    for path in (key_file, cert_file):
        try:
            with open(path, "rb") as handle:
                pems.append(handle.read())
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    key, cert = pems
    if b"PRIVATE KEY" not in key:
        raise ValueError(f"{key_file} holds no PEM private key")
    if b"CERTIFICATE" not in cert:
        raise ValueError(f"{cert_file} holds no PEM certificate")
    return grpc.ssl_server_credentials([(key, cert)])
