"""Audiences beside a real collector: membership within seconds of the event's 200, an exit on time
alone, a definition added while it runs, a bad definition refused at start."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from helpers import CollectorProcess, wait_until
from tests.profiles.killing import KEY, send


def define(workdir: Path, kind: str, name: str, text: str) -> None:
    (workdir / "engage" / kind).mkdir(parents=True, exist_ok=True)
    path = workdir / "engage" / kind / f"{name}.yaml"
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").rename(path)  # as an editor saves: whole


def rows(data_dir: Path, sql: str, *params) -> list[tuple]:
    if not (data_dir / "profiles.db").exists():
        return []
    db = sqlite3.connect(f"file:{data_dir / 'profiles.db'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # not made yet
        return []
    finally:
        db.close()


def members(data_dir: Path, audience: str) -> set[str]:
    return {user for (user,) in rows(data_dir, "SELECT i.value FROM engage_members m JOIN identifiers i "
                                     "ON i.profile_id = m.profile_id AND i.type = 'user_id' WHERE m.audience = ?", audience)}  # fmt: skip


def test_in_within_seconds_of_the_200_and_out_when_the_window_passes(tmp_path):
    define(tmp_path, "audiences", "just_clicked", "name: Clicked in the last 3 seconds\n"
                                                  "condition: {event: Clicked, within: 3s}\n")  # fmt: skip
    with CollectorProcess(tmp_path, [{"name": "web", "write_key": KEY}]) as collector:
        assert send(collector.url, [{"type": "track", "event": "Clicked", "userId": "u-1"}])
        wait_until(lambda: members(collector.data_dir, "just_clicked") == {"u-1"}, timeout=10, what="u-1 in the audience")
        wait_until(lambda: not members(collector.data_dir, "just_clicked"), timeout=60, what="u-1 out, 3 s later")
        stays = rows(collector.data_dir, "SELECT entered_at, exited_at FROM engage_history")
        (clicked,) = rows(collector.data_dir, "SELECT time FROM engage_hits")
        assert len(stays) == 1 and clicked[0] + 3 <= stays[0][1] < clicked[0] + 60


def test_a_definition_added_while_running_counts_the_events_before_it(tmp_path):
    with CollectorProcess(tmp_path, [{"name": "web", "write_key": KEY}]) as collector:
        assert send(collector.url, [{"type": "track", "event": "Order Completed", "userId": f"u-{n}",
                                     "properties": {"revenue": 20 * n}} for n in range(1, 5)])  # fmt: skip
        wait_until(lambda: rows(collector.data_dir, "SELECT events FROM checkpoint") == [(4,)], timeout=10, what="folded")
        define(tmp_path, "audiences", "big", "condition:\n  event: Order Completed\n"
                                             "  where: {field: properties.revenue, op: gte, value: 60}\n")  # fmt: skip
        wait_until(lambda: members(collector.data_dir, "big") == {"u-3", "u-4"}, timeout=20, what="the new audience")


def test_a_bad_definition_stops_the_collector_at_start_with_its_file_and_line(tmp_path):
    define(tmp_path, "audiences", "vip", "name: VIP\ncondition:\n  trait: plan\n  op: equals\n  value: gold\n")
    (tmp_path / "intilery.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    done = subprocess.run([sys.executable, "-m", "collector", "serve", "--config", str(tmp_path / "intilery.toml"),
                           "--port", "0"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert f"{tmp_path / 'engage' / 'audiences' / 'vip.yaml'}:4: unknown operator 'equals'" in done.stderr
