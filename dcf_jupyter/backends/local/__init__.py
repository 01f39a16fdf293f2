"""The local backend: a worker process per replica on this machine (backend.py), forked from warm templates
(templates.py), reached over a framed Unix-socket link (link.py)."""
