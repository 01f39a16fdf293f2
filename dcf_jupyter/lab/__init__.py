"""The jupyter_server side of the JupyterLab DCF panel (enabled by the config file the wheel installs)."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "dcf_jupyter.lab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Add the panel's REST handlers to the server."""
    from .handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("dcf_jupyter: the DCF panel's API is at %sdcf/", server_app.web_app.settings["base_url"])
