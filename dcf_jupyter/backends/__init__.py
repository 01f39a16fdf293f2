"""Where replicas run, behind one Backend interface (base.py): worker processes (local.py) or containers
(docker.py); the gateway's end of the worker link (link.py, grpc_link.py)."""
