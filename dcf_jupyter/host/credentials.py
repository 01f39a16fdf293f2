"""The owner's credential and owner-only files, the way Jupyter keeps its tokens and connection files.

Every gateway needs a token for what runs code or shows a function's data. Unless one is given (--token-file,
$DCF_TOKEN), a gateway uses its owner's: one random token per user, made at the first gateway start and kept in
`token` of the user's dcf-jupyter config dir (0700 folder, 0600 file). The owner's CLI, Python client, kernels
and JupyterLab server read it there and send it only to a gateway whose socket belongs to the same user
(`ports`); it is never put on a command line, in a registry or in a log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

ENV_CONFIG_DIR = "DCF_CONFIG_DIR"
TOKEN_FILE = "token"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def config_dir() -> Path:
    """The user's dcf-jupyter config dir: $DCF_CONFIG_DIR, else the platform's (e.g. ~/.config/dcf-jupyter)."""
    explicit = os.environ.get(ENV_CONFIG_DIR)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("dcf-jupyter", appauthor=False))


def token_path() -> Path:
    """Where the owner's token lives."""
    return config_dir() / TOKEN_FILE


def private_dir(path: Path) -> list[str]:
    """Create `path` (and missing parents) owner-only, or tighten it to 0700 if others may enter it; returns what
    was tightened, for the log."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    return tighten(path)


def tighten(path: Path) -> list[str]:
    """Take group and other permissions off one file or folder of ours; returns a note when it had any."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return []
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or not info.st_mode & 0o077:
        return []
    mode = stat.S_IMODE(info.st_mode)
    path.chmod(mode & 0o700)
    return [f"tightened {path} from {mode:04o} to {mode & 0o700:04o} (owner-only)"]


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    staging.replace(path)


def read_owner_token() -> str | None:
    """The owner's token if a gateway of this user made one; None otherwise (a client never makes one)."""
    path = token_path()
    try:
        info = path.stat()
        if info.st_uid != os.geteuid():
            return None  # not ours: never send what another user could have written
        tighten(path)
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def owner_token() -> str:
    """The owner's token, made now (random, 0600 in a 0700 folder) if this is the user's first gateway; two
    gateways starting at once agree on one."""
    found = read_owner_token()
    if found:
        return found
    folder = config_dir()
    private_dir(folder)
    staging = folder / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(staging, token_path())  # atomic, and refuses to replace a token another start just made
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()
    found = read_owner_token()
    if not found:
        raise OSError(f"cannot read the owner's token back from {token_path()}")
    return found
