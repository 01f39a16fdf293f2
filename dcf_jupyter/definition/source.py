"""A function folder as bytes: packed by the client for Deploy, unpacked safely by the gateway."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import zlib
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, InvalidArgument, brief

SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", ".venv", "venv", "node_modules",
     ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
SKIP_SUFFIXES = (".pyc", ".pyo")
MAX_MEMBERS = 100_000
YIELD_EVERY = 64  # archive entries read between two chances for other threads to run


def iter_source_files(root: Path) -> list[Path]:
    """Files of a function folder that belong in its source (caches, VCS and venvs left out), sorted. Links to
    folders are followed (a `src/` linked from elsewhere is packed), each folder once."""
    files: list[Path] = []
    seen: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = Path(dirpath).resolve()
        if real in seen:  # a link back up the tree
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                files.append(Path(dirpath) / name)
    return files


def source_digest(root: str | Path) -> str:
    """A hash of a function folder's source files (names and contents): which image was built from it."""
    root = Path(root).resolve()
    digest = hashlib.sha256()
    for path in iter_source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def add_normalized(tar: tarfile.TarFile, path: Path, name: str) -> None:
    """Add `path` as `name` with owner, mtime and mode normalised, so the bytes depend on content only
    (stable digests, and Docker's layer cache keyed on content)."""
    info = tar.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o755 if info.mode & 0o111 else 0o644
    with open(path, "rb") as fh:
        tar.addfile(info, fh)


def pack_folder(root: str | Path, *, limit: int) -> bytes:
    """The folder as a gzip'd tar (reproducible: sorted, no owners, fixed mtimes); ConfigError past `limit` bytes."""
    root = Path(root).resolve()
    if not (root / "config.yaml").is_file():
        raise ConfigError(f"{root} has no config.yaml; is it a function folder?")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6, dereference=True) as tar:
        for path in iter_source_files(root):
            add_normalized(tar, path, path.relative_to(root).as_posix())
            if buffer.tell() > limit:
                break
    data = buffer.getvalue()
    if len(data) > limit:
        raise ConfigError(
            f"{root} packs to more than {limit // (1024 * 1024)} MiB; move large data (datasets, weights) "
            "out of the function folder or install it from requirements.txt"
        )
    return data


def unpack_source(data: bytes, dest: Path, *, max_bytes: int, max_files: int = MAX_MEMBERS) -> None:
    """Extract a packed function folder into `dest`; InvalidArgument for anything unsafe or oversized, found while
    reading the headers (so a bomb is refused at its first oversized entry, before anything is written). Blocks
    for as long as the archive takes: call it off an event loop."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")  # noqa: SIM115 - closed by the `with tar` below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidArgument(f"the function source is not a gzip'd tar archive ({exc})") from None
    with tar:
        members: list[tarfile.TarInfo] = []
        total = 0
        try:
            for member in tar:
                if len(members) % YIELD_EVERY == 0:
                    # Reading headers is pure Python: let the caller's other threads (a gateway's event loop) have
                    # the GIL now and then, rather than every 5 ms switch interval.
                    time.sleep(0)
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
                    raise InvalidArgument(f"the function source holds an unsafe entry {brief(member.name)}")
                members.append(member)
                if len(members) > max_files:
                    raise InvalidArgument(f"the function source has more than {max_files} files")
                total += member.size
                if total > max_bytes:
                    raise InvalidArgument(f"the function source unpacks to more than {max_bytes // (1024 * 1024)} "
                                          "MiB, the gateway's limit (4 times its --max-message-size)")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise InvalidArgument(f"the function source archive is corrupt ({exc})") from None
        dest.mkdir(parents=True, exist_ok=True)
        # Members were checked above; the "data" filter (where this Python has it) checks again. What lands is its
        # owner's alone, whatever modes the archive carries (tarfile sets them regardless of the umask).
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter=_owner_only)
        else:
            for member in members:
                member.mode &= 0o700
            tar.extractall(dest, members=members)


def _owner_only(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    checked = tarfile.data_filter(member, dest)
    return checked if checked.mode is None else checked.replace(mode=checked.mode & 0o700, deep=False)
