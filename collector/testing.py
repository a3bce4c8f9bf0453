"""Moved to ``tests/helpers.py``. Kept only for tests/browser/harness.py and tests/e2e/conftest.py,
which import from here (under pytest, where ``tests/`` is on the path); remove once they import
``helpers``. Nothing in the collector imports this module."""

from helpers import GEO_NETWORKS, build_geo_db, free_port, stop_process, wait_until  # noqa: F401
