"""The docker backend: a container per replica from the function's image (backend.py), reached over gRPC
(grpc_link.py)."""
