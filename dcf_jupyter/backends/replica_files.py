"""What a replica gets besides its function's folder: its secrets as owner-only files, and the credential it calls
other functions with. Written into a private folder per replica (the local backend's in the gateway's 0700
socket folder; Docker mounts the same folder read-only), removed when the replica stops."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from ..credentials import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from ..protocol.names import ENV_MESH_ADDRESS, ENV_MESH_TOKEN_FILE, ENV_SECRETS_DIR
from .base import DeploymentSpec

SECRETS = "secrets"
MESH_TOKEN = "mesh-token"


def needs_files(spec: DeploymentSpec) -> bool:
    """Whether a replica of `spec` gets a folder of its own."""
    return bool(spec.secrets) or spec.mesh is not None


def write_replica_files(folder: Path, spec: DeploymentSpec) -> None:
    """Write `folder` (made now, 0700): secrets/NAME/KEY (0600) and the mesh credential (0600)."""
    folder.mkdir(mode=PRIVATE_DIR_MODE)
    (folder / SECRETS).mkdir(mode=PRIVATE_DIR_MODE)
    for name, values in spec.secrets.items():
        (folder / SECRETS / name).mkdir(mode=PRIVATE_DIR_MODE)
        for key, value in values.items():
            _write(folder / SECRETS / name / key, value)
    if spec.mesh is not None:
        _write(folder / MESH_TOKEN, spec.mesh.token.encode())


def replica_environment(spec: DeploymentSpec, folder: Path | PurePosixPath | None) -> dict[str, str]:
    """The variables that tell a replica where its files are (`folder` as the replica sees it), and its secrets'
    keys where the function asks for them as variables."""
    env = spec.secret_environment()
    if folder is not None:
        env[ENV_SECRETS_DIR] = str(folder / SECRETS)
        if spec.mesh is not None:
            env[ENV_MESH_ADDRESS] = spec.mesh.address
            env[ENV_MESH_TOKEN_FILE] = str(folder / MESH_TOKEN)
    return env


def remove_replica_files(folder: Path | None) -> None:
    """Remove a replica's folder (nothing if there is none)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
