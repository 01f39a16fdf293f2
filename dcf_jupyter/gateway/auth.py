"""Who may do what: bearer-token checks on gRPC metadata, and the bind/TLS rules of the gateway.

Policy, when a token is set: the management RPCs (Deploy, Update, Delete, ReplicaUpdate) always need it;
on a non-loopback address every RPC but HealthCheck needs it; on loopback, invoking and reading stay
open so DCF's own plaintext clients work unchanged. Without a token the gateway only listens on
loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

MANAGEMENT_RPCS = frozenset({"Deploy", "Update", "Delete", "ReplicaUpdate"})
OPEN_RPCS = frozenset({"HealthCheck"})  # liveness probes carry no credentials
BEARER = "bearer "


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere is treated as reachable from outside


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer TOKEN` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[: len(BEARER)].lower() == BEARER:
            return value[len(BEARER):].strip()
    return None


class TokenPolicy:
    """Which RPCs need the token; the token is compared in constant time."""

    def __init__(self, token: str, loopback: bool) -> None:
        if not token:
            raise ValueError("a token policy needs a token")
        self._token = token.encode()
        self.loopback = loopback

    def needs_token(self, method: str) -> bool:
        """True when `method` (e.g. "/pb.Gateway/Deploy") may only be called with the token."""
        name = method.rsplit("/", 1)[-1]
        if name in OPEN_RPCS:
            return False
        return name in MANAGEMENT_RPCS or not self.loopback

    def allows(self, method: str, metadata: Any) -> bool:
        """True when the call may go ahead."""
        if not self.needs_token(method):
            return True
        given = bearer_token(metadata)
        return given is not None and hmac.compare_digest(given.encode(), self._token)


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that fails with UNAUTHENTICATED."""
    async def abort(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def abort_streaming(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator, as a streaming handler must be

    args = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **args)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_streaming, **args)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **args)
    return grpc.stream_stream_rpc_method_handler(abort_streaming, **args)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without the token where the policy needs it (installed only when a token is set)."""

    def __init__(self, policy: TokenPolicy) -> None:
        self.policy = policy

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or self.policy.allows(details.method, details.invocation_metadata):
            return handler
        name = details.method.rsplit("/", 1)[-1]
        return _deny(handler, f"{name} needs the gateway's token: pass --token or set DCF_TOKEN "
                              "(sent as 'authorization: Bearer TOKEN' metadata)")


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
