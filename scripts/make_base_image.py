#!/usr/bin/env python3
"""Make a Python base image with no registry: debootstrap a Debian rootfs with Python, `docker import` it.

    python scripts/make_base_image.py [--tag dcf-test/python-base:bookworm] [--mirror URL]

For sites (and test machines) that reach a Debian mirror but no image registry. Prints the tag;
does nothing when the image exists. Needs root, debootstrap and a Docker daemon.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_TAG = "dcf-test/python-base:bookworm"
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"


def apt_mirror() -> str:
    """The Debian mirror apt on this machine uses."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        match = re.search(r"^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(https?://\S+/debian)/?\s", text, re.M)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def image_exists(tag: str) -> bool:
    """True if Docker has the image."""
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def make(tag: str, mirror: str, suite: str = "bookworm") -> None:
    """debootstrap `suite` with Python into a temp dir and import it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="dcf-rootfs-") as root:
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, root, mirror],
                       check=True, stdout=subprocess.DEVNULL)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        tar.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses here)")
    args = parser.parse_args()
    if not image_exists(args.tag):
        make(args.tag, args.mirror or apt_mirror())
    print(args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
