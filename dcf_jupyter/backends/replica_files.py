"""What a replica gets besides its function's folder: its secrets as owner-only files, and the credential it calls
other functions with. Written into a private folder per replica (the local backend's in the gateway's 0700
socket folder; Docker mounts the same folder read-only), removed when the replica stops. The folder's layout is
the worker's (worker/replica_folder.py): a replica on a cluster writes the same one itself."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from ..worker.replica_folder import folder_environment, write_replica_folder
from .base import DeploymentSpec


def needs_files(spec: DeploymentSpec) -> bool:
    """Whether a replica of `spec` gets a folder of its own."""
    return bool(spec.secrets) or spec.mesh is not None


def write_replica_files(folder: Path, spec: DeploymentSpec) -> None:
    """Write `folder` (made now, 0700): secrets/NAME/KEY (0600) and the mesh credential (0600)."""
    write_replica_folder(folder, spec.secrets, spec.mesh.token if spec.mesh is not None else None)


def replica_environment(spec: DeploymentSpec, folder: Path | PurePosixPath | None) -> dict[str, str]:
    """The variables that tell a replica where its files are (`folder` as the replica sees it), and its secrets'
    keys where the function asks for them as variables."""
    env = spec.secret_environment()
    if folder is not None:
        env.update(folder_environment(folder, spec.mesh.address if spec.mesh is not None else None))
    return env


def remove_replica_files(folder: Path | None) -> None:
    """Remove a replica's folder (nothing if there is none)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
