"""The DCF wire protocol: generated stubs (package `pb`, service `Gateway`; regenerate with
scripts/gen_protos.py), the wire names (`names`), the bytes codec (`wire`) and the worker link's
frame format (`link`).

Import the modules you need (`gateway_pb2`, `gateway_pb2_grpc`): workers use the
messages only and should not load grpc for nothing.
"""

from .names import SERVICE

__all__ = ["SERVICE"]
