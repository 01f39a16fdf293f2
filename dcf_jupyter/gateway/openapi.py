"""The HTTP face's OpenAPI 3.1 description (GET /openapi.json), written by hand beside the routes it describes;
tests/test_http.py checks that the two list the same methods and paths."""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..protocol.names import HEALTHY, method

_ERROR = {"description": "An error: {\"message\": sentence, \"code\": the gRPC status name}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The function's name"}
_JSON_OK = {"description": "The reply message in protobuf's JSON mapping (field names as in gateway.proto)",
            "content": {"application/json": {"schema": {"type": "object"}}}}
_TOKEN: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(summary: str, rpc: str, *, token: bool = True, body: str = "", params: list[Any] | None = None,
        ok: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary, "operationId": rpc, "x-grpc-method": method(rpc),
        "responses": {"200": ok or _JSON_OK, "default": _ERROR},
    }
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "description": f"pb.{body} in protobuf's JSON mapping"}}}}
    if token:
        operation["security"] = _TOKEN
    return operation


def openapi() -> dict[str, Any]:
    """The description of every route of the HTTP face."""
    invoke = _op("Call a function: the body is req.input; the reply has the handler's content type. A generator "
                 "handler's items stream back (chunked; server-sent events with Accept: text/event-stream).",
                 "InvokeStream", params=[_NAME, {"name": "X-Dcf-Timeout", "in": "header", "required": False,
                                                 "schema": {"type": "number"}, "description": "seconds to wait"}],
                 ok={"description": "The reply's bytes", "content": {"*/*": {"schema": {}}}})
    invoke["requestBody"] = {"required": False, "content": {"*/*": {"schema": {"type": "string",
                                                                              "format": "binary"}}}}
    spawn = _op("Spawn a call the gateway runs on its own and keeps (24 h): 202 at once, its id in X-Call-Id; "
                "with X-Callback-Url the result is POSTed there when done", "Spawn",
                params=[_NAME, {"name": "X-Callback-Url", "in": "header", "required": False,
                                "schema": {"type": "string"}, "description": "an http(s) URL for the result"}],
                ok={"description": "unused: 202 is the answer", "content": {}})
    spawn["responses"] = {"202": {"description": "Accepted: the call's standing as JSON, X-Call-Id its id",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          "default": _ERROR}
    spawn["requestBody"] = {"required": False, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    log = _op("A function's recent log lines", "GetLog",
              params=[_NAME, {"name": "lines", "in": "query", "required": False, "schema": {"type": "integer"}}],
              ok={"description": "Log lines", "content": {"text/plain": {"schema": {"type": "string"}}}})
    return {
        "openapi": "3.1.0",
        "info": {"title": "dcf-jupyter gateway", "version": __version__,
                 "description": "The HTTP face of the DCF gateway: the routes of DCF and OpenFx's gateways, each "
                                "calling the gRPC service's own method. Every route but /healthz needs the "
                                "token as 'Authorization: Bearer TOKEN', unless a loopback gateway was started "
                                "with --open-loopback: then invoking, List, GetMeta, Info and /metrics are "
                                "open."},
        "paths": {
            "/function/{name}": {"post": invoke},
            "/function/{name}/stream": {"get": _op(
                "A WebSocket: each message (binary, or text as UTF-8) is one call; replies come back in request "
                "order, text for text and JSON replies, binary for bytes; a failure ends the stream with a JSON "
                "{message, code} and close code 1011", "Invokes", params=[_NAME],
                ok={"description": "101 Switching Protocols", "content": {}})},
            "/async-function/{name}": {"post": spawn},
            "/system/call/{id}": {"get": _op(
                "How a spawned call stands; once done, a single call's result (result: text or JSON; result_base64: "
                "bytes; error: a failure)", "GetCall", params=[
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "The call's id (X-Call-Id)"},
                    {"name": "wait", "in": "query", "required": False, "schema": {"type": "number"},
                     "description": "seconds to wait for it to finish (at most 60)"}])},
            "/system/functions": {
                "get": _op("Deployed functions", "List"),
                "post": _op("Deploy a function (Source: the folder as a base64 tar.gz)", "Deploy",
                            body="CreateFunctionRequest"),
                "put": _op("Update a deployed function", "Update", body="CreateFunctionRequest"),
            },
            "/system/function/{name}": {
                "get": _op("One function", "GetMeta", params=[_NAME]),
                "delete": _op("Stop and remove a function", "Delete", params=[_NAME]),
            },
            "/system/function-log/{name}": {"get": log},
            "/system/scale-function": {"put": _op("Set a function's replica count", "ReplicaUpdate",
                                                  body="ScaleServiceRequest")},
            "/system/info": {"get": _op("The gateway: version, backends, GPUs", "Info",
                                        ok={"description": "Info as JSON", "content": {"application/json": {
                                            "schema": {"type": "object"}}}})},
            "/healthz": {"get": _op("Liveness: 'OK'", "HealthCheck", token=False, ok={
                "description": HEALTHY, "content": {"text/plain": {"schema": {"type": "string"}}}})},
            "/metrics": {"get": _op("Prometheus metrics", "Metrics", ok={"description": "Prometheus text format",
                                                                        "content": {"text/plain": {"schema": {
                                                                            "type": "string"}}}})},
            "/openapi.json": {"get": _op("This description", "OpenAPI", token=False)},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["message"], "properties": {
                "message": {"type": "string"}, "code": {"type": "string"}}}},
        },
    }
