"""What the builder-kill tests share (files and NATS): traffic acknowledged per person, a builder
killed with SIGKILL again and again while it commits, and the counts the database ends with."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable

from collector.profiles import views
from collector.profiles.database import open_store
from helpers import wait_until

KEY = "wk_test"


def send(url: str, batch: list[dict]) -> bool:
    request = urllib.request.Request(url + "/v1/batch", data=json.dumps({"batch": batch}).encode(),
                                     headers={"Content-Type": "application/json", "X-Write-Key": KEY})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status == 200
    except OSError:
        return False


def profiles_process(data_dir: Path, *args: str, db: str | None = None) -> subprocess.Popen:
    more = ["--profiles-db", str(db)] if db else []
    return subprocess.Popen([sys.executable, "-m", "collector", "profiles", "--data-dir", str(data_dir), *more, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def committed(db: str | Path) -> int:
    """The builder's committed event count (0 before its first commit, or its database)."""
    if not str(db).startswith("postgres") and not Path(db).exists():
        return 0
    store = open_store(db, reads_only=True)
    try:
        rows = store._all("SELECT events FROM checkpoint")
    finally:
        store.close()
    return rows[0][0] if rows else 0


class Traffic:
    """Batches of 50 track events of ``users`` people sent in a thread until the block ends;
    ``sent`` counts, per userId, the events the collector acknowledged."""

    def __init__(self, url: str, users: int, seed: int) -> None:
        self.url, self.users, self.rng = url, users, random.Random(seed)
        self.sent: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send)

    def _send(self) -> None:
        n = 0
        while not self.stop.is_set():
            batch = []
            for _ in range(50):
                n += 1
                user = f"u{self.rng.randrange(self.users)}"
                batch.append({"type": "track", "event": "Viewed", "userId": user, "anonymousId": f"a-{user}",
                              "messageId": f"m{n}"})  # fmt: skip
            if send(self.url, batch):
                self.sent.update(e["userId"] for e in batch)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def kill_builders(start: Callable[[], subprocess.Popen], db: str | Path, kills: int, rng: random.Random) -> None:
    """Start a builder, wait for it to commit, SIGKILL it anywhere in its next batch; ``kills`` times."""
    for _ in range(kills):
        builder = start()
        before = committed(db)
        wait_until(lambda: committed(db) > before, timeout=60, what="the builder to commit")
        threading.Event().wait(rng.uniform(0, 0.25))  # not a wait for a result: the kill lands anywhere in a batch
        builder.send_signal(signal.SIGKILL)
        builder.wait(30)


def counted_per_user(db: str | Path) -> dict[str, int]:
    """Each profile's user id and its event count."""
    store = open_store(db)
    try:
        counted = {}
        for pid in store.profile_ids():
            ids = {i["type"]: i["id"] for i in views.external_ids(store, pid)}
            counted[ids["user_id"]] = views.traits(store, pid)["event_count"]
    finally:
        store.close()
    return counted
