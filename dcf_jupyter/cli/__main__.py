"""python -m dcf_jupyter.cli: the `dcf` command without the console script."""

from . import main

main()
