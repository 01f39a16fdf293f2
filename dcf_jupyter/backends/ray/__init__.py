"""The ray backend: a Serve application per function (backend.py) on a Ray cluster or a local Ray this gateway
starts and stops (head.py); Ray's private API only through internals.py."""
