"""This machine as the gateway and its tools see it: whether a process is alive (pids.py), who holds a port and
how an address is spelt (ports.py), the user's private files and token (credentials.py), which of the user's
gateways run here (running.py), and logs that stay bounded (logfile.py)."""
