"""Intilery collector: receives Segment-style tracking messages and keeps them durably."""

__version__ = "0.1.0"
