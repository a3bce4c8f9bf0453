"""The duplicate filter: ids seen in the window are remembered, memory stays bounded."""

from __future__ import annotations

from collector.dedup import Dedup

HOUR = 3600.0


class TestDedup:
    def test_remembers_within_the_window_and_forgets_after(self):
        dedup = Dedup(window_seconds=24 * HOUR)
        dedup.add(["a", "b"], now=0)
        dedup.add(["c"], now=23 * HOUR)
        assert dedup.seen("a") and dedup.seen("c") and not dedup.seen("z")
        dedup.add(["d"], now=25.5 * HOUR)  # the first hour is now out of the window
        assert not dedup.seen("a") and not dedup.seen("b")
        assert dedup.seen("c") and dedup.seen("d")

    def test_an_id_seen_again_lives_on_in_the_newer_bucket(self):
        dedup = Dedup(window_seconds=24 * HOUR)
        dedup.add(["a"], now=0)
        dedup.add(["a"], now=20 * HOUR)
        dedup.add(["x"], now=30 * HOUR)
        assert dedup.seen("a")

    def test_memory_is_bounded_by_max_entries(self):
        """Past the cap the oldest ids go first, whatever the window says."""
        dedup = Dedup(window_seconds=24 * HOUR, max_entries=2_400)
        for n in range(100):
            dedup.add([f"id-{n}-{k}" for k in range(100)], now=float(n))
        assert len(dedup) <= 2_400 + 100
        assert dedup.seen("id-99-99") and not dedup.seen("id-0-0")
