"""python -m dcf_jupyter.worker FUNCTION_DIR ...: one worker process (see `process`)."""

import sys

from .process import main

sys.exit(main())
