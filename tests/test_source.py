"""Function folders as Deploy payloads: packed reproducibly, unpacked safely."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dcf_jupyter.definition.source import pack_folder, unpack_source
from dcf_jupyter.errors import ConfigError, InvalidArgument


def make_folder(root: Path) -> Path:
    (root / "src" / "__pycache__").mkdir(parents=True)
    (root / "config.yaml").write_text("functions:\n  f: {}\n")
    (root / "src" / "handler.py").write_text("class Handler: ...\n")
    (root / "src" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    return root


def test_pack_round_trips_without_caches_and_is_reproducible(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "fn")
    data = pack_folder(folder, limit=1 << 20)
    assert data == pack_folder(folder, limit=1 << 20)
    unpack_source(data, tmp_path / "out", max_bytes=1 << 20)
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert files == ["config.yaml", "src/handler.py"]


def test_pack_refuses_folders_without_config_and_oversized_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.yaml"):
        pack_folder(tmp_path, limit=1 << 20)
    folder = make_folder(tmp_path / "big")
    (folder / "weights.bin").write_bytes(__import__("os").urandom(300_000))
    with pytest.raises(ConfigError, match="packs to more than"):
        pack_folder(folder, limit=100_000)


def tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../escape.py", "/abs/path.py", "a/../../b.py"])
def test_unpack_refuses_paths_outside(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="unsafe entry"):
        unpack_source(tar_with(tarfile.TarInfo(name), b"x"), tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "escape.py").exists()


def test_unpack_refuses_links_and_devices(tmp_path: Path) -> None:
    link = tarfile.TarInfo("evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(InvalidArgument, match="unsafe entry"):
        unpack_source(tar_with(link), tmp_path / "out", max_bytes=1 << 20)


def test_unpack_refuses_garbage_and_bombs(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a gzip'd tar"):
        unpack_source(b"not a tarball", tmp_path / "out", max_bytes=1 << 20)
    with pytest.raises(InvalidArgument, match="unpacks to more than"):
        unpack_source(tar_with(tarfile.TarInfo("zeros"), bytes(3 << 20)), tmp_path / "out", max_bytes=1 << 20)
