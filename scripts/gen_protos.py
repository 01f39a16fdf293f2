#!/usr/bin/env python3
"""Regenerate dcf_jupyter/protocol/ from proto/gateway.proto (needs grpcio-tools).

    python scripts/gen_protos.py            # rewrite the stubs in place
    python scripts/gen_protos.py --check    # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE_DIR = ROOT / "dcf_jupyter" / "protocol"
GENERATED = ("gateway_pb2.py", "gateway_pb2.pyi", "gateway_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    """Run protoc on proto/gateway.proto, writing the three stub files into out_dir."""
    from grpc_tools import protoc  # imported late: only developers need grpcio-tools

    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / "gateway.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on proto/gateway.proto")
    # protoc writes a top-level import; the stubs live inside a package. The file
    # keeps the name "gateway.proto" in the descriptor pool, exactly as DCF's does.
    grpc_file = out_dir / "gateway_pb2_grpc.py"
    text = grpc_file.read_text()
    text = re.sub(r"^import gateway_pb2 as", "from . import gateway_pb2 as", text, flags=re.M)
    grpc_file.write_text(text)


def stale_files() -> list[str]:
    """Names of the committed stubs that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            name
            for name in GENERATED
            if not (PACKAGE_DIR / name).exists()
            or (PACKAGE_DIR / name).read_text() != (Path(tmp) / name).read_text()
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale protocol stubs: " + ", ".join(stale) + " (run scripts/gen_protos.py)")
            return 1
        print("protocol stubs are up to date")
        return 0
    generate(PACKAGE_DIR)
    print(f"wrote {', '.join(GENERATED)} to {PACKAGE_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
