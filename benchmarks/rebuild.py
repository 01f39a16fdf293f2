"""Warm image rebuild after a handler-only change: the layer order keeps everything but the source cached.

    python benchmarks/rebuild.py [--base-image IMAGE] [--network host] [--ca-bundle PATH] [--runs 3]

Builds a fresh copy of functions/hello-dcf once (cold for that tag), then edits only src/handler.py and
rebuilds, `--runs` times; prints the cold time and the median warm rebuild. Target: warm < 10 s.
Defaults suit a machine with no registry access: the offline base image of scripts/make_base_image.py.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcf_jupyter.build.image import BuildOptions, build_image, docker_client  # noqa: E402 - after the sys.path or importorskip set-up above
from dcf_jupyter.definition.spec import load_config  # noqa: E402 - after the sys.path or importorskip set-up above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", default=None, help="default: make/reuse the offline test base image")
    parser.add_argument("--network", default="host")
    parser.add_argument("--ca-bundle", type=Path, default=Path("/etc/ssl/certs/ca-certificates.crt"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = args.base_image or subprocess.run([sys.executable, str(ROOT / "scripts" / "make_base_image.py")],
                                             check=True, capture_output=True, text=True).stdout.strip()
    options = BuildOptions(base_image=base, network=args.network,
                           ca_bundle=args.ca_bundle if args.ca_bundle.exists() else None)
    client = docker_client()
    with tempfile.TemporaryDirectory(prefix="dcf-rebuild-") as tmp:
        folder = Path(tmp) / "rebuild-bench"
        shutil.copytree(ROOT / "functions" / "hello-dcf", folder)
        config = folder / "config.yaml"
        config.write_text(config.read_text().replace("hello-dcf", "rebuild-bench"))
        spec = load_config(config).function()
        start = time.perf_counter()
        build_image(spec, options, client=client)
        cold = time.perf_counter() - start
        warm = []
        for run in range(args.runs):
            handler = folder / "src" / "handler.py"
            handler.write_text(handler.read_text() + f"\n# edit {run} {time.time()}\n")
            start = time.perf_counter()
            build_image(spec, options, client=client)
            warm.append(time.perf_counter() - start)
        client.images.remove(spec.image_ref, force=True)
    print(f"image build of hello-dcf on {base}:")
    print(f"  first build of the tag (shared layers may be cached)  {cold:6.2f} s")
    print(f"  warm rebuild after a handler-only change, median of {args.runs}  {statistics.median(warm):6.2f} s"
          "   (target < 10 s)")


if __name__ == "__main__":
    main()
