"""Moved to ``collector.log``. Kept only for tests/browser/harness.py and tests/e2e/conftest.py,
which import ``read_events`` from here; remove once they import ``collector.log.reader``."""
