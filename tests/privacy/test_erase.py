"""Privacy requests on the file store: suppress, erase and export one person (issue 14)."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from helpers import CollectorProcess, assert_whole, wait_until
from privacy.paused_collector import PAUSE_ENV
from privacy.people import (
    ANN, BOB, PROFILES, TOKEN, WRITE, call, events_of, mentions, person_ids, regulate, seed, status_of,
)  # fmt: skip


def collector(tmp_path, **settings) -> CollectorProcess:
    return CollectorProcess(tmp_path, access_token=TOKEN, **settings)


class PausedCollector(CollectorProcess):
    """The collector run by ``paused_collector.py``: its rewrites stop where ``PAUSE_ENV`` says."""

    def spawn(self, cmd: list[str]):
        assert cmd[1:3] == ["-m", "collector"], cmd
        return super().spawn([cmd[0], str(Path(__file__).with_name("paused_collector.py")), *cmd[3:]])


def live_traffic(url: str, person: dict) -> None:
    """Events of this hour (the open segment) and a refused message (a dead letter) of the person."""
    batch = [{"type": "track", "userId": person["user"], "event": "Live", "properties": {"email": person["email"]}},
             {"type": "page", "anonymousId": person["anons"][0], "name": "Live page"},
             {"type": "track", "userId": person["user"]}]  # no event name: refused, kept in rejected/
    status, body = call(url + "/v1/batch", "POST", {"batch": batch}, WRITE)
    assert status == 200 and len(body["rejected"]) == 1, body


def built(url: str, person: dict) -> bool:
    status, body = call(f"{url}{PROFILES}/user_id:{person['user']}/external_ids")
    return status == 200 and len(body["data"]) == len(person_ids(person))


def finished(url: str, regulate_id: str) -> dict | None:
    record = status_of(url, regulate_id)
    assert record["status"] != "FAILED", record
    return record if record["status"] == "FINISHED" else None


@pytest.fixture
def two_people(tmp_path):
    """A running collector over two people's history: gzipped segments of past hours, open ones, dead letters."""
    data_dir = tmp_path / "data"
    seed(data_dir, [ANN, BOB])
    proc = collector(tmp_path).start()
    try:
        live_traffic(proc.url, ANN)
        live_traffic(proc.url, BOB)
        wait_until(lambda: built(proc.url, ANN) and built(proc.url, BOB), what="both profiles built")
        yield proc
    finally:
        proc.stop()


def test_suppress_with_delete_by_email_leaves_nothing_of_the_person(two_people):
    proc, data_dir = two_people, two_people.data_dir
    ann_before, bob_before = events_of(data_dir, ANN), events_of(data_dir, BOB)
    assert len(ann_before) > 15 and len(bob_before) > 15
    assert mentions(data_dir, person_ids(ANN)), "the test must start with the person on disk"
    assert any(p.name.endswith(".ndjson") for p in (data_dir / "events").rglob("*")), "an open segment"

    regulate_id = regulate(proc.url, "SUPPRESS_WITH_DELETE", "EMAIL", [ANN["email"].upper()])
    record = wait_until(lambda: finished(proc.url, regulate_id), what="the erasure")

    assert mentions(data_dir, person_ids(ANN)) == {}
    assert events_of(data_dir, BOB) == bob_before
    assert events_of(data_dir, ANN) == []
    assert record["stores"]["events"]["removed"] == len(ann_before)
    assert record["stores"]["rejected"]["removed"] >= 2  # the seeded dead letter and the live one
    assert record["stores"]["profiles"]["profiles"] == 1
    assert record["identifiers"] == len(person_ids(ANN))
    for kind, value in (("user_id", ANN["user"]), ("email", ANN["email"]), ("anonymous_id", ANN["anons"][1])):
        assert call(f"{proc.url}{PROFILES}/{kind}:{value}/traits")[0] == 404
    status, body = call(f"{proc.url}{PROFILES}/user_id:{BOB['user']}/events?limit=100")
    assert status == 200 and len(body["data"]) == min(100, len(bob_before))  # its index follows the rewrite
    assert_whole(data_dir)

    # suppressed: a new event of the person is answered 200 and not stored
    for event in ({"type": "track", "userId": ANN["user"], "event": "After"},
                  {"type": "page", "anonymousId": ANN["anons"][1]},
                  {"type": "identify", "anonymousId": "anon-new-device", "traits": {"email": ANN["email"]}}):
        status, body = call(proc.url + "/v1/batch", "POST", {"batch": [event]}, WRITE)
        assert status == 200 and body["accepted"] == 1
    assert call(proc.url + "/v1/track", "POST", {"userId": BOB["user"], "event": "After"}, WRITE)[0] == 200
    assert mentions(data_dir, person_ids(ANN)) == {}
    assert len(events_of(data_dir, BOB)) == len(bob_before) + 1
    with urllib.request.urlopen(proc.url + "/metrics") as answer:
        metrics = answer.read().decode()
    assert 'intilery_events_suppressed_total{source="web"} 3' in metrics


def test_sigkill_during_an_erase_then_restart_completes_it(tmp_path, monkeypatch):
    """Killed in the middle of a segment's rewrite (after the new file is ready, before its rename):
    the restarted collector finishes the job, and the other person loses nothing."""
    data_dir = tmp_path / "data"
    seed(data_dir, [ANN, BOB])
    bob_before = events_of(data_dir, BOB)
    for step in ("written", "ready", "renamed"):
        monkeypatch.setenv(PAUSE_ENV, f"{step}:3")
        proc = PausedCollector(tmp_path, access_token=TOKEN).start()
        monkeypatch.delenv(PAUSE_ENV)
        wait_until(lambda: built(proc.url, ANN), what="the profile built")
        ids = [ANN["user"]] if step == "written" else [ANN["anons"][0]]
        regulate_id = regulate(proc.url, "DELETE_ONLY" if step == "ready" else "SUPPRESS_WITH_DELETE", "USER_ID" if
                               step == "written" else "ANONYMOUS_ID", ids)  # fmt: skip
        paused = data_dir / "regulations" / "paused"
        wait_until(paused.exists, what=f"the erase to reach {step}")
        paused.unlink()
        proc.stop(signal.SIGKILL)
        assert status_of_file(data_dir, regulate_id) == "RUNNING"
        proc = collector(tmp_path).start()
        try:
            wait_until(lambda: finished(proc.url, regulate_id), what="the resumed erasure")
        finally:
            proc.stop()
        assert events_of(data_dir, BOB) == bob_before, step
        assert events_of(data_dir, ANN) == [], step
        assert mentions(data_dir, person_ids(ANN)) == {}, step
        assert_whole(data_dir)
        seed(data_dir, [ANN])  # the person again (another history), for the next kill point


def status_of_file(data_dir, regulate_id: str) -> str:
    return json.loads((data_dir / "regulations" / f"{regulate_id}.json").read_text())["status"]


def test_export_holds_exactly_the_persons_events(two_people):
    proc, data_dir = two_people, two_people.data_dir
    status, body = call(f"{proc.url}{PROFILES}/email:{BOB['email']}/export")
    assert status == 200
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[0]["type"] == "profile" and lines[0]["traits"]["email"] == BOB["email"]
    assert {i["id"] for i in lines[0]["external_ids"]} == set(person_ids(BOB))
    assert sorted(e["messageId"] for e in lines[1:]) == events_of(data_dir, BOB)
    assert call(f"{proc.url}{PROFILES}/email:nobody@example.com/export")[0] == 404
    assert call(f"{proc.url}{PROFILES}/email:{BOB['email']}/export", headers=WRITE)[0] == 401


def test_unsuppress_lets_new_events_in_again(two_people):
    proc, data_dir = two_people, two_people.data_dir
    before = len(events_of(data_dir, BOB))
    suppress = regulate(proc.url, "SUPPRESS", "USER_ID", [BOB["user"]])
    record = wait_until(lambda: finished(proc.url, suppress), what="suppress")
    assert not [k for k in record if "ash" in k], "the API answers a request's counts, never its hashes"
    assert call(proc.url + "/v1/page", "POST", {"anonymousId": BOB["anons"][0]}, WRITE)[0] == 200
    assert len(events_of(data_dir, BOB)) == before  # by another identifier of the person: not stored
    assert (data_dir / "regulations" / "suppressed.json").read_text().count(BOB["user"]) == 0
    unsuppress = regulate(proc.url, "UNSUPPRESS", "USER_ID", [BOB["user"]])
    wait_until(lambda: finished(proc.url, unsuppress), what="unsuppress")
    assert call(proc.url + "/v1/page", "POST", {"anonymousId": BOB["anons"][0]}, WRITE)[0] == 200
    assert len(events_of(data_dir, BOB)) == before + 1


BAD_REQUESTS = [
    ({"regulationType": "FORGET", "subjectType": "EMAIL", "subjectIds": ["a@b.c"]}, "invalid_regulation"),
    ({"regulationType": "SUPPRESS", "subjectType": "PHONE", "subjectIds": ["1"]}, "invalid_regulation"),
    ({"regulationType": "SUPPRESS", "subjectType": "EMAIL", "subjectIds": "a@b.c"}, "invalid_regulation"),
    ({"regulationType": "SUPPRESS", "subjectType": "EMAIL", "subjectIds": [7]}, "invalid_regulation"),
    ({"regulationType": "SUPPRESS", "subjectType": "EMAIL", "subjectIds": []}, "too_many_subjects"),
    ({"regulationType": "SUPPRESS", "subjectType": "EMAIL", "subjectIds": [f"{n}@x.io" for n in range(5001)]},
     "too_many_subjects"),
    ([1, 2], "invalid_regulation"),
    ({"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": ["x" * 1025]}, "invalid_regulation"),
    ({"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": ["x" * 1000] * 7000}, "too_many_subjects"),
]  # fmt: skip


def test_bad_requests_are_400_with_a_code(tmp_path):
    with collector(tmp_path) as proc:
        for body, code in BAD_REQUESTS:
            status, answer = call(proc.url + "/v1/regulations", "POST", body)
            assert (status, answer["code"]) == (400, code) and answer["message"], body
        assert call(proc.url + "/v1/regulations/reg_nothere")[1]["code"] == "regulation_not_found"
        assert call(proc.url + "/v1/regulations", headers=WRITE)[0] == 401
        assert call(proc.url + "/v1/regulations")[1] == {"data": []}


def test_with_two_workers_both_rotate_and_both_suppress(tmp_path):
    """``--workers 2``: the open segment (the host writer's, which stores for both workers) is
    closed before the rewrite, and the 202 of a suppression comes once both workers drop the
    person's events."""
    data_dir = tmp_path / "data"
    seed(data_dir, [ANN, BOB])
    proc = collector(tmp_path, workers=2).start()
    try:  # each worker and the host writer has its ack of rotations (collector/log/rotation.py)
        wait_until(lambda: len(list((data_dir / ".rotation").glob("*.ack"))) == 3, what="both workers and the writer up")
        for _ in range(20):  # a new connection each: the kernel spreads them over both workers
            live_traffic(proc.url, ANN)
            live_traffic(proc.url, BOB)
        assert list((data_dir / "events").rglob("part-*.ndjson")), "the person's latest events are in an open segment"
        wait_until(lambda: built(proc.url, ANN) and built(proc.url, BOB), what="both profiles built")
        bob_before = events_of(data_dir, BOB)
        regulate_id = regulate(proc.url, "SUPPRESS_WITH_DELETE", "USER_ID", [ANN["user"]])
        for _ in range(20):
            assert call(proc.url + "/v1/page", "POST", {"anonymousId": ANN["anons"][0]}, WRITE)[0] == 200
        wait_until(lambda: finished(proc.url, regulate_id), what="the erasure")
        assert mentions(data_dir, person_ids(ANN)) == {}
        assert events_of(data_dir, BOB) == bob_before
    finally:
        proc.stop()
