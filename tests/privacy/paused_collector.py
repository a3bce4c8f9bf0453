"""``python tests/privacy/paused_collector.py serve ...``: the collector, with its segment rewrites
stopped at one step so that a test can SIGKILL it there (a test's hook, kept out of the code).

``INTILERY_TEST_PAUSE=<step>:<n>`` stops the n-th rewrite of the process after ``step`` (one of
``collector.log.rewrite``'s ``pause`` steps), writing ``<data_dir>/regulations/paused`` and
sleeping until killed (60 s at most).
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

PAUSE_ENV = "INTILERY_TEST_PAUSE"


def install(spec: str) -> None:
    from collector.log import rewrite

    step, _, nth = spec.partition(":")
    original, calls = rewrite.rewrite, [0]

    def paused(path, change, *, pause=lambda step: None, **options):
        calls[0] += 1
        count = calls[0]

        def stop(at: str) -> None:
            pause(at)
            if at == step and count == int(nth or 1):
                (rewrite.data_dir_of(Path(path)) / "regulations" / "paused").write_text(f"{at}:{count}\n")
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # the test kills the process meanwhile
                    time.sleep(0.05)

        return original(path, change, pause=stop, **options)

    rewrite.rewrite = paused


if __name__ == "__main__":
    if os.environ.get(PAUSE_ENV):
        install(os.environ[PAUSE_ENV])
    sys.argv = ["intilery", *sys.argv[1:]]
    runpy.run_module("collector", run_name="__main__", alter_sys=True)
