"""A DCF client as users wrote them, on stubs compiled from the original proto (run in its own process).

    python original_client.py STUB_DIR ADDRESS [TOKEN]

Without TOKEN it sends none, as DCF's clients did (a gateway started with --open-loopback serves it); with one, it
sends it as `authorization: Bearer TOKEN` metadata, as a DCF client given the token would.
"""

import sys

sys.path.insert(0, sys.argv[1])

import gateway_pb2
import gateway_pb2_grpc
import grpc

channel = grpc.insecure_channel(sys.argv[2])
if len(sys.argv) > 3:
    class WithToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            return continuation(details._replace(metadata=[("authorization", f"Bearer {sys.argv[3]}")]), request)

        intercept_stream_stream = intercept_unary_unary

    channel = grpc.intercept_channel(channel, WithToken())
stub = gateway_pb2_grpc.GatewayStub(channel)

assert stub.Invoke(gateway_pb2.InvokeServiceRequest(Service="echo", Input=b"hi")).Msg == "hi"
assert stub.Invoke(gateway_pb2.InvokeServiceRequest(Service="hello-dcf", Input=b"x")).Msg == "Hello DCF"

frames = [bytes([i % 256]) * (1000 + i) for i in range(200)]
replies = stub.Invokes(gateway_pb2.InvokeServiceRequest(Service="echo", Input=f) for f in frames)
assert [r.Output for r in replies] == frames

names = {f.Name for f in stub.List(gateway_pb2.Empty()).Functions}
assert {"echo", "hello-dcf"} <= names, names
assert stub.HealthCheck(gateway_pb2.Empty()).Msg == "OK"
meta = stub.GetMeta(gateway_pb2.FunctionRequest(FunctionName="echo"))
assert meta.Name == "echo" and meta.InvocationCount >= 201, meta
print("original DCF client OK")
