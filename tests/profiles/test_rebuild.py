"""``intilery profiles --rebuild`` on a PostgreSQL database that the builders of other hosts share."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from collector.profiles import views
from collector.profiles.builder import Builder
from collector.profiles.database import checkpoint_name, open_store
from collector.profiles.service import follow

from .conftest import Log, ev

DEADLINE = 60.0  # seconds: a liveness bound, not a measurement


def count_of(store, user: str) -> int | None:
    pid = store.find("user_id", user)
    store.commit()
    return None if pid is None else (views.traits(store, pid) or {}).get("event_count")


def test_a_rebuild_takes_the_lock_and_every_host_reads_its_own_log_again(tmp_path, config, postgres):
    """Two hosts, each with its own log, share one database. Host A rebuilds while host B's builder
    has a batch in hand (the builders' lock held): the rebuild waits for that batch; then A's log is
    read again by A, and B's builder, still running, finds its checkpoint back at the start and reads
    B's log again. Both people are whole (D7; before, B's checkpoint was deleted, the builder kept
    its cursor in memory, and Bob was gone for good)."""
    url = postgres.database()
    host_a = replace(config, data_dir=tmp_path / "a", profiles_db=url)
    host_b = replace(config, data_dir=tmp_path / "b", profiles_db=url)
    Log(host_a.data_dir).write([ev(userId="ann") for _ in range(3)])
    Log(host_b.data_dir).write([ev(userId="bob") for _ in range(4)])
    assert checkpoint_name(host_a) != checkpoint_name(host_b)
    store_b = open_store(url, building=True)
    builder_b = Builder(store_b, host_b.data_dir, checkpoint=checkpoint_name(host_b))
    assert builder_b.catch_up() == 4
    follow(host_a, lambda: True, once=True)

    watcher = open_store(url, reads_only=True)
    store_b.begin()  # B's next batch under way: the builders' lock held
    rebuild = threading.Thread(target=follow, args=(host_a, lambda: True), kwargs={"rebuild": True, "once": True})
    rebuild.start()
    deadline = time.monotonic() + DEADLINE
    while not watcher._all("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") and rebuild.is_alive():
        assert time.monotonic() < deadline, "the rebuild neither waited for the lock nor ended"
        time.sleep(0.01)
    store_b.save_checkpoint(builder_b.name, builder_b.reader.cursor, builder_b.count)  # the batch commits
    store_b.commit()
    rebuild.join(DEADLINE)
    assert not rebuild.is_alive()

    builder_b.catch_up()  # B's builder, as it polls
    assert (count_of(watcher, "ann"), count_of(watcher, "bob")) == (3, 4)
    store_b.close()
    watcher.close()
