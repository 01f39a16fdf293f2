"""Every use of Ray's private API, in one place, for the Ray versions this package is tested with.

Ray has no public way to: re-read its auth token after the environment changed, upload a working_dir the way
`ray.init` does, say which node an actor runs on without the dashboard, give a Serve deployment a fixed version,
run an application without blocking, or route a handle's calls on the caller's own event loop. Each is a function
here; a Ray outside SUPPORTED_RAY is refused with a sentence when the ray backend starts, instead of failing later in
one of these.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ...errors import GatewayStartError

# Kept equal to the `ray` extra's pin in pyproject.toml (tests/test_ray.py checks both). CI runs the newest.
SUPPORTED_RAY = ">=2.50,<2.61"


def check_version(version: str) -> None:
    """Refuse a Ray whose private API this module was not tested with, in one sentence."""
    try:
        supported = Version(version) in SpecifierSet(SUPPORTED_RAY)
    except InvalidVersion:
        supported = False
    if not supported:
        raise GatewayStartError(f"the ray backend supports Ray {SUPPORTED_RAY}, and this Python has Ray {version}: "
                                f"pip install 'ray[serve]{SUPPORTED_RAY}' (or 'dcf-jupyter[ray]')")


def reload_auth_token() -> None:
    """Make Ray read its auth mode and token again (it reads them once, when imported or starting a cluster)."""
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # a Ray without token authentication needs none
        return
    auth.Config.initialize("")
    auth.AuthenticationTokenLoader.instance().reset_cache()


def upload_working_dir(runtime_env: dict[str, Any], log: logging.Logger) -> dict[str, Any]:
    """The runtime_env with its working_dir uploaded to the cluster (a content-addressed gcs:// URI)."""
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    return dict(upload_working_dir_if_needed(runtime_env, include_gitignore=False, logger=log))


def placement() -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Resources available on each node now, and the actor table (each actor's class, state and node)."""
    from ray._private import state as ray_state

    return ray_state.state.available_resources_per_node(), list(ray_state.actors().values())


def run_application(deployment: Any, arguments: tuple[Any, ...], version: str, name: str) -> None:
    """Deploy (or update) the application of `deployment` bound to `arguments` without waiting for it, at a fixed
    version: a re-run of the same version (a scale, a gateway re-attaching) leaves its replicas serving."""
    from ray.serve.api import _run

    if hasattr(deployment, "_version"):  # `options(version=)` is no longer public; `serve.run` reads this
        deployment._version = version
    _run(deployment.bind(*arguments), name=name, route_prefix=None, _blocking=False)


def route_on_this_loop(handle: Any) -> None:
    """Have a DeploymentHandle route its calls on the running event loop instead of a loop thread of its own (a
    Ray without that option keeps its default)."""
    with contextlib.suppress(TypeError, AttributeError):
        handle._init(_run_router_in_separate_loop=False)
