"""Execute tutorial notebooks headless in a real kernel (nbclient), the way a user's Run All does.

Imported by the notebook tests, and run as a script by the Binder test inside the venv that `binder/` builds
(so it needs nothing but nbclient and nbformat, which JupyterLab brings):

    python notebook_runner.py WORKDIR NOTEBOOK...    # writes WORKDIR/report.json
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent


def execute(path: Path, workdir: Path, *, timeout: int = 300) -> nbformat.NotebookNode:
    """Run a copy of the notebook in `workdir`/notebooks (its function folders land there, not in the repo),
    with `workdir`/functions standing for the repository's examples, as "../functions" from the notebook, and
    `workdir`/notebooks/images for the demo photos beside it."""
    (workdir / "notebooks").mkdir(parents=True, exist_ok=True)
    if not (workdir / "functions").exists():
        (workdir / "functions").symlink_to(ROOT / "functions")
    if not (workdir / "notebooks" / "images").exists():
        (workdir / "notebooks" / "images").symlink_to(ROOT / "notebooks" / "images")
    workdir = workdir / "notebooks"
    copy = workdir / path.name
    shutil.copy(path, copy)
    notebook = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def unexpected_errors(notebook: nbformat.NotebookNode) -> list[str]:
    """'cell source: Error: message' for each error output of a cell not tagged raises-exception."""
    found = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and "raises-exception" not in cell.metadata.get("tags", []):
            for output in cell.outputs:
                if output.get("output_type") == "error":
                    found.append(f"{cell.source[:200]!r}: {output['ename']}: {output['evalue']}")
    return found


def main(argv: list[str]) -> int:
    """Execute each notebook in its own subfolder of WORKDIR; write {notebook: [errors]} to WORKDIR/report.json
    (a file: what the notebooks' shell commands print goes to stdout)."""
    workdir, paths = Path(argv[0]), [Path(p) for p in argv[1:]]
    report: dict[str, list[str]] = {}
    for path in paths:
        try:
            report[path.name] = unexpected_errors(execute(path, workdir / path.stem))
        except nbclient.exceptions.CellExecutionError as exc:  # an error in a cell not allowed one
            report[path.name] = [str(exc)[-2000:]]
        print(f"{path.name}: {len(report[path.name])} unexpected error(s)", file=sys.stderr, flush=True)
    (workdir / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
