"""The gateway's HTTP face: the same service as its gRPC one, on a port of its own, on the same event loop.

    POST /function/{name}            the body is req.input; the reply comes back with the handler's content type
                                     (a generator's items stream back as they come: chunked, or server-sent
                                     events with `Accept: text/event-stream`)
    GET  /function/{name}/stream     a WebSocket: one message one call, replies in order (an Invokes stream)
    POST /async-function/{name}      Spawn: 202 and X-Call-Id at once; X-Callback-Url gets the result POSTed
    GET  /system/call/{id}           GetCall: how a spawned call stands, its result once done (?wait=S)
    GET  /system/functions           List            POST/PUT /system/functions   Deploy / Update (JSON)
    GET  /system/function/{name}     GetMeta         DELETE /system/function/{name}   Delete
    GET  /system/function-log/{name} GetLog          PUT  /system/scale-function  ReplicaUpdate
    GET  /system/info                Info            GET  /healthz                HealthCheck
    GET  /metrics                    Prometheus      GET  /openapi.json           this API, described

Every route calls the gRPC service's own method (a request message in, a reply message out, JSON in between as
protobuf's JSON mapping writes it), so HTTP and gRPC cannot disagree: the same credential (`Authorization:
Bearer TOKEN`) under the same open/closed split (auth.py), the same size limit, and errors as
`{"message": sentence}` with the HTTP status of the gRPC one. aiohttp, because it is asyncio's own HTTP server
and client (it runs on the gateway's loop beside grpc.aio, with no second server framework) and carries
WebSockets too.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.web_protocol import RequestPayloadError
from google.protobuf import json_format
from google.protobuf.message import Message

from ..protocol import gateway_pb2 as pb
from ..protocol.names import AUTHORIZATION_KEY, BINARY, JSON, ORIGIN_KEY, RETRY_AFTER_KEY, TEXT
from ..protocol.names import method as rpc_path
from ..protocol.wire import call_head
from .auth import TokenPolicy
from .http_server import OpenConnections
from .invoke import MAX_CALL_WAIT_S
from .limits import BODY_BUDGET_MESSAGES, IDLE_TIMEOUT_S, TCP_CONNECTIONS_MAX, BodyBudget, BodyTooMuch
from .metrics import GatewayMetrics
from .openapi import openapi
from .rpc import Abort, within
from .spawned import check_callback

log = logging.getLogger("dcf.gateway")

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 412, grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
CONTENT_TYPES = {TEXT: "text/plain; charset=utf-8", JSON: "application/json", BINARY: "application/octet-stream"}
TIMEOUT_HEADER = "X-Dcf-Timeout"  # seconds the caller waits, as a gRPC deadline does
CALLBACK_HEADER = "X-Callback-Url"  # where a spawned call's result is POSTed (OpenFaaS's async functions' header)
ORIGIN_HEADER = "X-Dcf-Origin"  # who failed: the gateway or the function (as gRPC's trailing metadata says)


LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HttpAbort(Exception):
    """What `context.abort` raises for an HTTP request: the gRPC status and its sentence."""

    def __init__(self, code: grpc.StatusCode, message: str, metadata: Any = (), headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = dict(metadata or ())
        self.headers = headers or {}


class HttpContext:
    """What the gateway's RPC methods use of a gRPC ServicerContext, for a call that came over HTTP."""

    def __init__(self, timeout: float | None) -> None:
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        raise HttpAbort(code, details, trailing_metadata)


def failure(code: grpc.StatusCode, message: str, origin: str = "", headers: dict[str, str] | None = None,
            retry_after: str | float | None = None) -> web.Response:
    """An error as every route answers it; one to try again after `retry_after` seconds (a full queue) is 429
    Too Many Requests with Retry-After."""
    status = HTTP_STATUS.get(code, 500)
    if retry_after is not None:
        status = 429
        headers = {**(headers or {}), "Retry-After": str(max(1, math.ceil(float(retry_after))))}
    response = web.json_response({"message": message, "code": code.name}, status=status, headers=headers)
    if origin:
        response.headers[ORIGIN_HEADER] = origin
    return response


def as_json(message: Message) -> dict[str, Any]:
    """A protobuf message as protobuf's JSON mapping writes it (field names as in gateway.proto)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class HttpFace:
    """The routes, over a gateway's service object (service.Gateway) and its token policy."""

    def __init__(self, gateway: Any, policy: TokenPolicy, metrics: GatewayMetrics, *, max_message: int,
                 cors_origins: tuple[str, ...] = (), loopback: bool = True,
                 connections: OpenConnections | None = None) -> None:
        self.gateway = gateway
        self.policy = policy
        self.metrics = metrics
        self.max_message = max_message
        self.cors_origins = cors_origins
        self.loopback = loopback  # served on a loopback address: only this machine's names are its hosts
        self.bodies = BodyBudget(BODY_BUDGET_MESSAGES * max_message)
        self.connections = connections or OpenConnections(TCP_CONNECTIONS_MAX, IDLE_TIMEOUT_S)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=self.max_message,
                              middlewares=[self.connections.busy, self._errors])
        app.router.add_post("/function/{name}", self.invoke)
        app.router.add_get("/function/{name}/stream", self.stream)
        app.router.add_post("/async-function/{name}", self.spawn)
        app.router.add_get("/system/call/{id}", self.get_call)
        app.router.add_get("/system/functions", self.list_functions)
        app.router.add_post("/system/functions", self.deploy)
        app.router.add_put("/system/functions", self.update)
        app.router.add_get("/system/function/{name}", self.get_meta)
        app.router.add_delete("/system/function/{name}", self.delete)
        app.router.add_get("/system/function-log/{name}", self.get_log)
        app.router.add_put("/system/scale-function", self.scale)
        app.router.add_get("/system/info", self.info)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/openapi.json", self.describe)
        return app

    # --- the rules every route follows ----------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        allowed = origin in self.cors_origins
        refused = self._browser_refused(request, origin, allowed)
        if refused:
            return failure(grpc.StatusCode.PERMISSION_DENIED, refused)
        if allowed and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Max-Age": "600",
                "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
                "Access-Control-Allow-Headers": f"Authorization, Content-Type, {TIMEOUT_HEADER}"})
        request["cors"] = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if allowed else {}
        try:
            response = await self._answer(request, handler)
        finally:
            self.bodies.give_back(request.get("body_held", 0))  # held until the call it carried has ended
        if not response.prepared:  # a streamed reply took them before its headers went out
            response.headers.update(request["cors"])
        return response

    def _browser_refused(self, request: web.Request, origin: str, allowed: bool) -> str:
        """Why a request from a web page is refused ('' when it is not): any page may make a browser send a POST
        to 127.0.0.1 (and, renaming its own host to 127.0.0.1, read the replies), so a page of an origin not
        listed with --cors-origin may not call, and a Host that is not this machine's name is refused."""
        if origin and not allowed:
            return (f"a web page of {origin[:100]} may not call this gateway (its owner lists the origins that "
                    "may with --cors-origin)")
        site = request.headers.get("Sec-Fetch-Site", "").lower()
        if site in ("cross-site", "same-site") and not allowed:  # a page's request that carries no Origin
            return (f"a request from another site's web page ({site}) may not call this gateway (its owner lists "
                    "the origins that may with --cors-origin)")
        host = host_of(request.host or "")
        if self.loopback and host and not (host in LOCAL_NAMES or _is_address(host)):
            return f"this gateway answers requests for its own address, not for {host[:100]!r}"
        return ""

    async def _answer(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except HttpAbort as exc:
            return failure(exc.code, exc.message, str(exc.metadata.get(ORIGIN_KEY, "")), exc.headers,
                           exc.metadata.get(RETRY_AFTER_KEY))
        except Abort as exc:
            return failure(exc.code, exc.message, exc.origin, retry_after=exc.retry_after)
        except web.HTTPRequestEntityTooLarge:
            return failure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"the request is larger than the gateway's limit of {self.max_message} bytes "
                           "(its --max-message-size)")
        except web.HTTPMethodNotAllowed as exc:
            response = failure(grpc.StatusCode.UNIMPLEMENTED, f"{request.method} {request.path} is not a route "
                               f"(allowed: {', '.join(sorted(exc.allowed_methods))}); see /openapi.json")
            response.set_status(405)
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            return response
        except web.HTTPNotFound:
            return failure(grpc.StatusCode.NOT_FOUND, f"no route {request.method} {request.path}; see /openapi.json")
        except web.HTTPException as exc:
            return web.json_response({"message": exc.reason}, status=exc.status)
        return response

    def _allow(self, request: web.Request, rpc: str) -> None:
        """Abort with UNAUTHENTICATED unless the policy lets this request call `rpc`."""
        header = request.headers.get("Authorization", "")
        refused = self.policy.refusal(rpc_path(rpc), [(AUTHORIZATION_KEY, header)] if header else [],
                                      sent_as="'Authorization: Bearer TOKEN'")
        if refused:
            raise HttpAbort(grpc.StatusCode.UNAUTHENTICATED, refused)

    @staticmethod
    def _timeout(request: web.Request) -> float | None:
        raw = request.headers.get(TIMEOUT_HEADER) or request.query.get("timeout")
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise HttpAbort(grpc.StatusCode.INVALID_ARGUMENT, f"{TIMEOUT_HEADER}: expected seconds, got {raw[:40]!r}") \
                from None
        if not value > 0:
            raise HttpAbort(grpc.StatusCode.INVALID_ARGUMENT, f"{TIMEOUT_HEADER}: must be above 0, got {raw[:40]!r}")
        return value

    async def _rpc(self, request: web.Request, rpc: str, method: Callable[..., Awaitable[Any]], message: Any) -> Any:
        """Call the service's `method` with `message` (a message type: the JSON body as one), once the policy
        lets this request call `rpc`: a body is read only for those who may send it."""
        self._allow(request, rpc)
        if isinstance(message, type):
            message = await self._json_body(request, message)
        return await method(message, HttpContext(self._timeout(request)))

    async def _json_body(self, request: web.Request, kind: type[Message]) -> Any:
        try:
            return json_format.Parse((await self._body(request)).decode("utf-8") or "{}", kind())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise HttpAbort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the body is not a {kind.DESCRIPTOR.name} in JSON: {str(exc)[:200]}") from None

    # --- invoking -------------------------------------------------------------------------------------------

    async def _body(self, request: web.Request, head: Callable[[int], bytes] | None = None) -> bytes:
        """The request's body, read within the budget of bodies in flight (held until the request ends): refused at
        once past it (503, Retry-After), or past the message limit (413); a body that stops arriving for
        IDLE_TIMEOUT_S is given up (408). `head(size)`, when given, is put in front of it in the one copy made
        of its pieces (what a message needs before its payload)."""
        length = request.content_length
        if length is not None and length > self.max_message:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_message, actual_size=length)
        chunks: list[bytes] = []
        size = 0
        try:
            if length:
                self._hold(request, length)
            while chunk := await within(request.content.readany(), IDLE_TIMEOUT_S):
                size += len(chunk)
                if size > self.max_message:
                    raise web.HTTPRequestEntityTooLarge(max_size=self.max_message, actual_size=size)
                if length is None:
                    self._hold(request, len(chunk))
                chunks.append(chunk)
        except asyncio.TimeoutError:
            raise HttpAbort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the request's body stopped arriving for "
                            f"{IDLE_TIMEOUT_S:g}s", headers={"Connection": "close"}) from None
        except (ConnectionError, RequestPayloadError):  # the client went away, or sent less than it said
            raise HttpAbort(grpc.StatusCode.CANCELLED, "the request's body was cut off") from None
        if head is not None:
            chunks.insert(0, head(size))
        return b"".join(chunks)

    def _hold(self, request: web.Request, size: int) -> None:
        try:
            self.bodies.take(size)
        except BodyTooMuch:
            raise HttpAbort(grpc.StatusCode.UNAVAILABLE,
                            f"the gateway is reading {self.bodies.held >> 20} MiB of request bodies already, its "
                            f"limit (twice its --max-message-size); try again in a moment",
                            headers={"Retry-After": "1"}) from None
        request["body_held"] = request.get("body_held", 0) + size

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        """POST /function/{name}: one call; a generator's items stream back as it yields them. The token, the
        route and the function are checked before a byte of the body is read."""
        self._allow(request, "InvokeStream")
        self.gateway.invoker.route(request.match_info["name"])
        name = request.match_info["name"]
        # The request message is the body with its head in front: no copy of the body but the one joining it.
        raw = await self._body(request, lambda size: call_head(name, size))
        timeout = self._timeout(request)
        context = HttpContext(timeout)
        events = "text/event-stream" in request.headers.get("Accept", "")
        items = self.gateway.invoker.InvokeStream(raw, context)

        async def next_item() -> bytes | None:  # within the caller's deadline, as gRPC keeps a call's
            left = context.time_remaining()
            if left is None:
                return await _next(items)
            try:
                return await within(_next(items), left)
            except asyncio.TimeoutError:
                await items.aclose()
                raise HttpAbort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"no reply within the caller's {TIMEOUT_HEADER} of {timeout:g}s") from None

        first = await next_item()
        if first is None:
            return web.Response(status=204)
        second = None if events else await next_item()
        first_reply = pb.Messages.FromString(first)
        content_type = CONTENT_TYPES.get(first_reply.ContentType, CONTENT_TYPES[BINARY])
        if second is None and not events:  # one reply: sent whole, with its length and content type
            return web.Response(body=first_reply.Output, content_type=None, headers={"Content-Type": content_type})
        response = web.StreamResponse(headers={**request.get("cors", {}),
                                               "Content-Type": "text/event-stream" if events else content_type})
        await response.prepare(request)
        try:
            await response.write(_chunk(first_reply, events))
            if second is not None:
                await response.write(_chunk(pb.Messages.FromString(second), events))
            while (item := await next_item()) is not None:
                await response.write(_chunk(pb.Messages.FromString(item), events))
        except (HttpAbort, Abort) as exc:
            # The headers said 200 already. Events end with an error event saying why; a chunked reply is cut
            # off without its last chunk, so no HTTP client takes the items so far for the whole reply.
            log.info("an HTTP stream of %s ended early: %s", request.match_info["name"], exc.message)
            if not events:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(_event({"message": exc.message, "code": exc.code.name}, "error"))
        await response.write_eof()
        return response

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET /function/{name}/stream, a WebSocket: each message is one call, each reply comes back in request
        order (text for text and JSON replies, binary for bytes). It is an `Invokes` stream: the same window of
        calls in flight, past which the gateway stops reading the socket, so TCP slows the sender."""
        self._allow(request, "Invokes")
        name = request.match_info["name"]
        self.gateway.invoker.route(name)  # refused before the upgrade, as a call would be
        socket_ = web.WebSocketResponse(max_msg_size=self.max_message, heartbeat=30)
        await socket_.prepare(request)

        async def calls() -> AsyncIterator[bytes]:
            async for message in socket_:
                if message.type == WSMsgType.BINARY:
                    yield call_head(name, len(message.data)) + message.data
                elif message.type == WSMsgType.TEXT:
                    data = message.data.encode()
                    yield call_head(name, len(data)) + data
                elif message.type == WSMsgType.ERROR:
                    return

        try:
            async for raw in self.gateway.invoker.Invokes(calls(), HttpContext(None)):
                reply = pb.Messages.FromString(raw)
                if reply.ContentType in (TEXT, JSON):
                    await socket_.send_str(reply.Output.decode("utf-8", "replace"))
                else:
                    await socket_.send_bytes(reply.Output)
        except HttpAbort as exc:  # the stream ends with its first failure, as Invokes does: said, then closed
            await socket_.send_json({"message": exc.message, "code": exc.code.name})
            await socket_.close(code=WSCloseCode.INTERNAL_ERROR, message=exc.code.name.encode())
            return socket_
        except ConnectionResetError:
            return socket_
        await socket_.close()
        return socket_

    # --- management -----------------------------------------------------------------------------------------

    async def spawn(self, request: web.Request) -> web.Response:
        """POST /async-function/{name}: one call the gateway runs on its own and keeps: 202 at once, its id in
        X-Call-Id; with X-Callback-Url, the gateway POSTs the result there once it is done."""
        self._allow(request, "Spawn")
        name = request.match_info["name"]
        self.gateway.invoker.route(name)
        callback = check_callback(request.headers.get(CALLBACK_HEADER, ""))
        body = await self._body(request)
        first = pb.MapRequest(Service=name, Items=[pb.MapItem(Index=0, Input=body)], Single=True,
                              CallbackUrl=callback)
        call = await self.gateway.invoker.spawned.spawn(first)
        where = f"/system/call/{call.id}"
        return web.json_response({**as_json(call.info()), "status_url": where}, status=202,
                                 headers={"X-Call-Id": call.id, "Location": where})

    async def get_call(self, request: web.Request) -> web.Response:
        """GET /system/call/{id}: how a spawned call stands and, once done, a single call's result (`result`:
        text or JSON as the handler returned it, `result_base64` for bytes; `error` for a failure); `?wait=S`
        waits up to S seconds for it to finish."""
        self._allow(request, "GetCall")
        keeper = self.gateway.invoker.spawned
        call = keeper.get(request.match_info["id"])
        try:
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            raise HttpAbort(grpc.StatusCode.INVALID_ARGUMENT, "?wait=: expected seconds") from None
        await keeper.wait(call, min(wait, MAX_CALL_WAIT_S))
        standing = as_json(call.info())
        if call.single and call.state == "done":
            [result] = await keeper.results(call)
            if result.Code:
                standing["error"] = {"message": result.Error, "code": result.Code}
            else:
                standing.update(_result_fields(result.Reply))
        return web.json_response(standing)

    async def list_functions(self, request: web.Request) -> web.Response:
        reply = await self._rpc(request, "List", self.gateway.List, pb.Empty())
        return web.json_response(as_json(reply).get("Functions", []))

    async def deploy(self, request: web.Request) -> web.Response:
        reply = await self._rpc(request, "Deploy", self.gateway.deployer.Deploy, pb.CreateFunctionRequest)
        return web.json_response(as_json(reply))

    async def update(self, request: web.Request) -> web.Response:
        reply = await self._rpc(request, "Update", self.gateway.deployer.Update, pb.CreateFunctionRequest)
        return web.json_response(as_json(reply))

    async def get_meta(self, request: web.Request) -> web.Response:
        message = pb.FunctionRequest(FunctionName=request.match_info["name"])
        return web.json_response(as_json(await self._rpc(request, "GetMeta", self.gateway.GetMeta, message)))

    async def delete(self, request: web.Request) -> web.Response:
        message = pb.DeleteFunctionRequest(FunctionName=request.match_info["name"])
        return web.json_response(as_json(await self._rpc(request, "Delete", self.gateway.deployer.Delete, message)))

    async def get_log(self, request: web.Request) -> web.Response:
        try:
            lines = int(request.query.get("lines", "0"))
        except ValueError:
            raise HttpAbort(grpc.StatusCode.INVALID_ARGUMENT, "lines: expected a whole number") from None
        message = pb.FunctionRequest(FunctionName=request.match_info["name"], Lines=max(lines, 0))
        reply = await self._rpc(request, "GetLog", self.gateway.GetLog, message)
        return web.Response(text=reply.Msg, content_type="text/plain", charset="utf-8")

    async def scale(self, request: web.Request) -> web.Response:
        reply = await self._rpc(request, "ReplicaUpdate", self.gateway.deployer.ReplicaUpdate, pb.ScaleServiceRequest)
        return web.json_response(as_json(reply))

    async def info(self, request: web.Request) -> web.Response:
        reply = await self._rpc(request, "Info", self.gateway.Info, pb.Empty())
        return web.json_response(json.loads(reply.Msg))

    async def healthz(self, request: web.Request) -> web.Response:
        reply = await self._rpc(request, "HealthCheck", self.gateway.HealthCheck, pb.Empty())
        return web.Response(text=reply.Msg)

    async def prometheus(self, request: web.Request) -> web.Response:
        """GET /metrics: open where List is (what runs and how much it is called, no inputs or outputs)."""
        self._allow(request, "List")
        if not self.metrics.enabled:
            raise HttpAbort(grpc.StatusCode.NOT_FOUND, "this gateway counts nothing (it was started with --no-metrics)")
        body, content_type = await asyncio.to_thread(self.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def describe(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())


def _result_fields(reply: pb.Messages) -> dict[str, Any]:
    """A reply in a JSON answer: text as text, JSON as itself, bytes in base64; with its content type."""
    kind = reply.ContentType or BINARY
    if kind == TEXT:
        return {"content_type": kind, "result": reply.Output.decode("utf-8", "replace")}
    if kind == JSON:
        return {"content_type": kind, "result": json.loads(reply.Output)}
    return {"content_type": kind, "result_base64": base64.b64encode(reply.Output).decode("ascii")}


async def _next(items: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return None


def _event(data: Any, event: str = "") -> bytes:
    lines = [f"event: {event}"] if event else []
    text = data if isinstance(data, str) else json.dumps(data)
    lines += [f"data: {line}" for line in text.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def _chunk(reply: pb.Messages, events: bool) -> bytes:
    """One streamed item: its bytes as they are, or a server-sent event (text as is, bytes as base64)."""
    if not events:
        return bytes(reply.Output)
    if reply.ContentType in (TEXT, JSON):
        return _event(reply.Output.decode("utf-8", "replace"))
    import base64

    return _event(base64.b64encode(reply.Output).decode("ascii"), "bytes")


def host_of(header: str) -> str:
    """The host of a Host header, lower case, without its port: '[::1]:32223' -> '::1', 'Example:80' -> 'example'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    host, _, port = header.rpartition(":")
    return host if host and port.isdigit() else header
