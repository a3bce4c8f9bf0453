"""With PostgreSQL, hosts share the runs: each follows its own log (its own cursor), and both fire
the same due timers at once: SKIP LOCKED gives each timer to one of them, so each send is made once."""

from __future__ import annotations

import threading
import time

from collector.config import Config
from collector.engage.journeys import definitions
from collector.engage.journeys.runner import Runner
from collector.engage.journeys.store import open_journeys
from collector.profiles.database import db_target

from .conftest import Log, ev, write_destination, write_journey

LATER = "entry: {event: Signed Up}\nsteps:\n  - wait: 1s\n  - send: {destination: crm}\n  - track: {event: Done}\n"


def test_two_hosts_fire_each_timer_once(tmp_path, postgres):
    url = postgres.database()
    engage = tmp_path / "engage"
    write_destination(engage, "crm", url="http://127.0.0.1:9/hook")
    write_journey(engage, "later", LATER)
    hosts = [Config(data_dir=tmp_path / f"host{i}", engage_dir=engage, profiles_db=url) for i in range(2)]
    runners = []
    for i, host in enumerate(hosts):
        Log(host.data_dir).write([ev(event="Signed Up", userId=f"h{i}-{n}") for n in range(300)])
        store = open_journeys(db_target(host))
        runners.append(Runner(store, host.data_dir, definitions.load(engage), name=f"journeys@host{i}"))
    t = time.time()
    for runner in runners:
        while runner.step(t):
            pass
    fired = [0, 0]

    def fire(i: int) -> None:
        while True:
            n = runners[i].fire(t + 2, limit=20)  # small claims: the two hosts interleave
            if not n:
                return
            fired[i] += n

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    store = runners[0].store
    assert sum(fired) == 600 and all(fired), fired  # both took part, no timer twice
    assert store._all("SELECT COUNT(*), COUNT(DISTINCT id) FROM outbox")[0] == (600, 600)
    assert store._all("SELECT COUNT(*) FROM engage_announce")[0][0] == 600
    assert store._all("SELECT COUNT(*) FROM journey_runs WHERE state = 'ended' AND outcome = 'completed'")[0][0] == 600
    for runner in runners:
        runner.close()
        runner.store.close()
