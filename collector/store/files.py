"""Moved to ``collector.log`` (see ``collector/store/__init__.py``)."""

from collector.log.reader import read_events  # noqa: F401
