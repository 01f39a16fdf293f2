"""The package version, in a module of its own: the gateway, worker and CLI read it without the package face."""

__version__ = "0.1.0"
