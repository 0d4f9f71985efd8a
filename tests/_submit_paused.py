"""`cashcapture ARGS...` with the submitter stopped dead at named checkpoints.

    python tests/_submit_paused.py POINT[,POINT...] PAUSE_FILE submit --db URL ...

The kill tests run this, wait for the PAUSED line in PAUSE_FILE, then SIGKILL it:
the pause lives here, shipped code only has the `extract.submit.checkpoint` seam.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable


def pause_at(points: set[str], target: str) -> Callable[[str], None]:
    def hook(name: str) -> None:
        if name not in points:
            return
        with open(target, "a", encoding="ascii") as fh:
            fh.write(f"PAUSED {name} pid={os.getpid()}\n")
        while True:  # the test kills us here
            time.sleep(60)

    return hook


if __name__ == "__main__":
    import extract.submit
    from cli import main

    points, target, *args = sys.argv[1:]
    extract.submit.checkpoint = pause_at(set(points.split(",")), target)
    sys.exit(main(args))
