"""`%dcf stream NAME --camera | --video FILE`: the widget the magic shows. The extension hands this to the
magics when it loads them (widgets use the notebook's session and display; the notebook does not import widgets)."""

from __future__ import annotations

import argparse
from typing import Any

from ..client import Client


def stream_widget(args: argparse.Namespace, client: Client) -> Any:
    """A CameraStream (`--camera`) or a VideoStream (`--video FILE`) of `%dcf stream`'s arguments."""
    if args.camera:
        from ._camera import CameraStream

        return CameraStream(args.name, width=args.width, height=args.height, fps=args.fps or 30.0,
                            overlay=args.overlay, window=args.window, autostart=args.start, client=client)
    from ._video import VideoStream

    return VideoStream(args.name, args.video, window=args.window, fps=args.fps, overlay=args.overlay,
                       loop=args.loop, autostart=args.start, client=client)
