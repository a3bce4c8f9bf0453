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

    def test_bucket_numbers_wrapping_around_bring_no_old_id_back(self):
        """Buckets are numbered modulo 2**16 in the compact storage: after more buckets than that, an old id is still gone."""
        dedup = Dedup(window_seconds=24.0, max_entries=100)
        dedup.add(["old"], now=0)
        for n in range(1, 70_000):
            dedup.add([f"id-{n}"], now=float(n))
            if n in (65_536, 65_537, 69_999):
                assert not dedup.seen("old"), n
        assert dedup.seen("id-69999") and len(dedup) <= 100


class TestAcrossSources:
    async def test_the_same_message_id_from_two_sources_is_stored_twice(self, client, config):
        """Duplicates are keyed by source and messageId: another source's event with the id is its own."""
        from tests.conftest import stored

        message = {"userId": "u", "event": "E", "messageId": "shared-id"}
        for key in ("wk_web", "wk_server", "wk_web", "wk_server"):
            answer = await client.post("/v1/track", json=message, headers={"X-Write-Key": key})
            assert answer.status == 200
        assert sorted(e["source"] for e in stored(config.data_dir)) == ["server", "web"]

    async def test_after_a_restart_too(self, make_client, config):
        """The window rebuilt at start keeps the two sources apart as well."""
        from tests.conftest import stored

        message = {"userId": "u", "event": "E", "messageId": "shared-id"}
        first = await make_client(config)
        assert (await first.post("/v1/track", json=message, headers={"X-Write-Key": "wk_web"})).status == 200
        await first.close()
        second = await make_client(config)
        for key in ("wk_server", "wk_web"):
            assert (await second.post("/v1/track", json=message, headers={"X-Write-Key": key})).status == 200
        assert sorted(e["source"] for e in stored(config.data_dir)) == ["server", "web"]
