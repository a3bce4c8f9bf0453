"""Two people's history in a data directory, over several hours, and the checks of an erasure.

``seed`` writes closed (gzipped) segments of past hours through the file store itself, dead
letters included; a collector started on the directory then adds open segments. ``mentions``
reads every file under the data directory (gzip files decompressed) for a list of strings.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from collector.log.files import FileStore
from collector.log.layout import EVENTS, REJECTED, day_partition, hour_partition, iso_ms
from collector.log.reader import Reader

TOKEN = "at_privacy_test_token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
WRITE = {"X-Write-Key": "wk_test", "Content-Type": "application/json"}
PROFILES = "/v1/spaces/default/collections/users/profiles"

ANN = {"user": "user-ann-42", "email": "Ann.Lee@Example.com", "anons": ["anon-ann-phone", "anon-ann-laptop"]}
BOB = {"user": "user-bob-7", "email": "bob@example.org", "anons": ["anon-bob-phone"]}
_ids = itertools.count()


def person_ids(person: dict) -> list[str]:
    return [person["user"], person["email"], *person["anons"]]


def history(person: dict, start: float, hours: int) -> list[tuple[float, dict]]:
    """A person's events: anonymous browsing on each device, identify, then signed-in tracks."""
    events = []
    for hour in range(hours):
        t = start + hour * 3600
        for n, anon in enumerate(person["anons"]):
            events.append((t + n, {"type": "page", "anonymousId": anon, "name": f"Page {hour}"}))
            if hour == 0:
                events.append((t + 10 + n, {"type": "identify", "anonymousId": anon, "userId": person["user"],
                                            "traits": {"email": person["email"], "name": "Someone"}}))  # fmt: skip
        for n in range(3):
            events.append((t + 20 + n, {"type": "track", "userId": person["user"], "event": "Viewed",
                                        "properties": {"n": n, "contact": person["email"]}}))  # fmt: skip
    for t, event in events:
        event.update(messageId=f"m-{next(_ids)}-{int(t)}", source="web", timestamp=iso_ms(t), receivedAt=iso_ms(t),
                     originalTimestamp=iso_ms(t), sentAt=iso_ms(t))  # fmt: skip
    return events


def dead_letter(person: dict, t: float) -> bytes:
    """A refused request as ``rejected/`` keeps it: the body as sent, which names the person."""
    body = json.dumps({"batch": [{"type": "identify", "userId": person["user"], "traits": {"email": person["email"]},
                                  "timestamp": "not a time"}]})  # fmt: skip
    return orjson.dumps({"receivedAt": iso_ms(t), "source": "web", "code": "invalid_timestamp",
                         "message": "not ISO-8601", "payload": body}) + b"\n"  # fmt: skip


def seed(data_dir: Path, people: list[dict], hours: int = 4) -> None:
    """Closed segments of the past ``hours`` hours for ``people``, and dead letters of each."""
    start = (int(time.time()) // 3600 - hours - 1) * 3600

    async def write() -> None:
        store = FileStore(data_dir, segment_max_bytes=4096)  # several segments per hour
        await store.start()
        futures = []
        for person in people:
            for t, event in history(person, start, hours):
                futures.append(store.append([orjson.dumps(event) + b"\n"], partition=hour_partition(t)))
            futures.append(store.append([dead_letter(person, start)], partition=day_partition(start), log=REJECTED))
        await asyncio.gather(*futures)
        await store.close()

    asyncio.run(write())


def events_of(data_dir: Path, person: dict) -> list[str]:
    """The messageIds of a person's stored events (by any of their identifiers), through the Reader."""
    ids = set(person_ids(person)) | {person["email"].lower()}
    found = []
    for event in Reader(Path(data_dir) / EVENTS).events():
        values = {event.get("userId"), event.get("anonymousId"), (event.get("traits") or {}).get("email")}
        if values & ids:
            found.append(event["messageId"])
    return sorted(found)


def mentions(data_dir: Path, needles: list[str]) -> dict[str, list[str]]:
    """Files under ``data_dir`` whose bytes (decompressed for .gz) hold a needle (any case)."""
    found: dict[str, list[str]] = {}
    lowered = [n.lower().encode() for n in needles]
    for path in sorted(Path(data_dir).rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        data = data.lower()
        hits = [n.decode() for n in lowered if n in data]
        if hits:
            found[str(path.relative_to(data_dir))] = hits
    return found


def call(url: str, method: str = "GET", body: object = None, headers: dict = AUTH) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
            kind = answer.headers.get("Content-Type", "")
            return answer.status, (json.loads(raw) if "json" in kind and "ndjson" not in kind else raw)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def regulate(url: str, kind: str, subject_type: str, ids: list[str]) -> str:
    status, body = call(url + "/v1/regulations", "POST",
                        {"regulationType": kind, "subjectType": subject_type, "subjectIds": ids})  # fmt: skip
    assert status == 202, body
    return body["regulateId"]


def status_of(url: str, regulate_id: str) -> dict:
    status, body = call(f"{url}/v1/regulations/{regulate_id}")
    assert status == 200, body
    return body
