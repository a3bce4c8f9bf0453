"""The one way the browser suites (``tests/browser``, ``tests/e2e``) start Chromium.

The system Chromium (``/usr/bin/chromium``, else ``chromium`` on PATH) when there is one,
else Playwright's own build (``playwright install chromium``). When neither starts, the test
fails with a message saying how to install one: a missing browser never passes as skipped tests.
"""

from __future__ import annotations

import os
import shutil

import pytest

SYSTEM_CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def system_chromium() -> str | None:
    """The system Chromium's path, or None when there is none."""
    if os.access(SYSTEM_CHROMIUM, os.X_OK):
        return SYSTEM_CHROMIUM
    return shutil.which("chromium")


def launch(playwright, extra_args: tuple[str, ...] = ()):
    """A headless Chromium started by ``playwright`` (the sync API) with FLAGS plus ``extra_args``."""
    path = system_chromium()
    try:
        return playwright.chromium.launch(executable_path=path, args=[*FLAGS, *extra_args])
    except Exception as e:  # Playwright raises its own Error types; any of them means no browser
        which = path or "Playwright's own Chromium"
        pytest.fail(
            f"cannot start {which}: {e}\n"
            "Install a browser: `apt-get install chromium` (Debian) or `python -m playwright install chromium`.",
            pytrace=False,
        )
