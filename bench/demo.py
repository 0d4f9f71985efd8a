"""`cashcapture demo` wall time, in-process and as the README runs it (a new process).

Run: .venv/bin/python bench/demo.py [RUNS]. The goal (issue 8) is under 30 s on a
2-core machine; this prints the median and worst of RUNS runs of each.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/extract.py would shadow the `extract` package: drop this folder from the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from cashcapture.app import demo  # noqa: E402


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    cli = str(Path(sys.executable).with_name("cashcapture"))
    with tempfile.TemporaryDirectory() as tmp:
        inproc, process = [], []
        for _ in range(runs):
            start = time.perf_counter()
            assert demo.run(Path(tmp) / "inproc").ok
            inproc.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run([cli, "demo", "--dir", f"{tmp}/proc"], check=True, capture_output=True)
            process.append(time.perf_counter() - start)
    for label, times in (("in-process demo.run", inproc), ("`cashcapture demo` process", process)):
        print(
            f"{label:28} median {statistics.median(times):.2f} s, worst {max(times):.2f} s "
            f"({runs} runs)"
        )


if __name__ == "__main__":
    main()
