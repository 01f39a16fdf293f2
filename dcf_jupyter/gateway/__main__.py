"""python -m dcf_jupyter.gateway: run a gateway; `dcf gateway start` is this very command, with the same flags."""

import sys

from ..launch.command import gateway_command_line

sys.exit(gateway_command_line())
