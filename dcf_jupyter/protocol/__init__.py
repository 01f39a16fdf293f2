"""Generated DCF protocol stubs (package `pb`, service `Gateway`); regenerate with scripts/gen_protos.py."""

from . import gateway_pb2, gateway_pb2_grpc

SERVICE = "pb.Gateway"

__all__ = ["SERVICE", "gateway_pb2", "gateway_pb2_grpc"]
