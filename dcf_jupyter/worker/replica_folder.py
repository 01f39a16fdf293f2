"""The layout of a replica's private folder, wherever it is written (by the gateway on its machine, mounted into a
container, or by a replica on a cluster node after fetching its secrets): `secrets/NAME/KEY` (0600 files in 0700
folders) and `mesh-token`, the credential dcf_jupyter.mesh calls with; and the variables that point at them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePath

from ..host.credentials import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from ..protocol.names import ENV_MESH_ADDRESS, ENV_MESH_TOKEN_FILE, ENV_SECRETS_DIR

SECRETS = "secrets"
MESH_TOKEN = "mesh-token"


def write_replica_folder(folder: Path, secrets: Mapping[str, Mapping[str, bytes]], mesh_token: str | None) -> None:
    """Write `folder` (made now, 0700): each secret's keys as files, and the mesh credential when there is one."""
    folder.mkdir(mode=PRIVATE_DIR_MODE)
    (folder / SECRETS).mkdir(mode=PRIVATE_DIR_MODE)
    for name, values in secrets.items():
        (folder / SECRETS / name).mkdir(mode=PRIVATE_DIR_MODE)
        for key, value in values.items():
            _write(folder / SECRETS / name / key, value)
    if mesh_token is not None:
        _write(folder / MESH_TOKEN, mesh_token.encode())


def folder_environment(folder: PurePath, mesh_address: str | None) -> dict[str, str]:
    """The variables that tell a replica where its folder's files are (`folder` as the replica sees it), and where
    its gateway is when it has the mesh credential."""
    env = {ENV_SECRETS_DIR: str(folder / SECRETS)}
    if mesh_address is not None:
        env[ENV_MESH_ADDRESS] = mesh_address
        env[ENV_MESH_TOKEN_FILE] = str(folder / MESH_TOKEN)
    return env


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
