"""Generated DCF protocol stubs (package `pb`, service `Gateway`); regenerate with scripts/gen_protos.py.

Import the modules you need (`gateway_pb2`, `gateway_pb2_grpc`): workers use the
messages only and should not load grpc for nothing.
"""

SERVICE = "pb.Gateway"
