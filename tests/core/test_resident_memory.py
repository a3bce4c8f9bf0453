"""The collector's resident memory (issue 19): what a default ``intilery serve`` loads, and glibc's malloc.

The overload's RSS itself is measured by ``python -m bench.run`` (bench/README); these tests check the
means: no module a default run never uses, at most ``MALLOC_ARENAS`` malloc arenas, free memory trimmed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from collector.serve.runtime import MALLOC_ARENAS
from helpers import CollectorProcess



def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


GLIBC = _glibc()
HEAP_MAX = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: each arena but the main one is a mapping this size and aligned

# Modules a default run (file store, SQLite profiles, no tracking plan) never uses.
NOT_LOADED = ("nats", "psycopg", "psycopg_binary", "jsonschema_rs")


def imported(log: Path) -> set[str]:
    """The modules named by ``-X importtime`` lines in a log."""
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", log.read_text(), re.M)}


def post_batch(url: str, count: int) -> None:
    body = json.dumps({"batch": [{"type": "track", "event": "Viewed", "anonymousId": f"a{i}"} for i in range(count)]})
    request = urllib.request.Request(url + "/v1/batch", body.encode(), {"Content-Type": "application/json"})
    request.add_header("Authorization", "Basic d2tfdGVzdDo=")  # wk_test:
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.mark.parametrize("with_plan", [False, True])
def test_a_default_serve_does_not_import_what_it_never_uses(tmp_path, monkeypatch, with_plan):
    """No NATS client, no PostgreSQL driver, no JSON Schema validator without a tracking plan (the
    run with a plan shows the check sees jsonschema_rs when it is loaded). The profile builder is a
    process of its own (``--no-profiles`` keeps its imports out of this log)."""
    source = {"name": "web", "write_key": "wk_test"}
    if with_plan:
        (tmp_path / "plan.yaml").write_text("track:\n  Viewed: {type: object}\n")
        source["tracking_plan"] = str(tmp_path / "plan.yaml")
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    with CollectorProcess(tmp_path, [source], args=["--no-profiles"]) as collector:
        post_batch(collector.url, 10)
        modules = imported(collector.log)
    assert "collector.app" in modules  # the log holds the server's imports
    loaded = {m for m in modules if m.split(".")[0] in NOT_LOADED}
    if with_plan:
        assert "jsonschema_rs" in loaded
    else:
        assert not loaded, f"a default serve imported {sorted(loaded)}"


def glibc_arenas(pid: int) -> int:
    """The malloc arenas of a process: the main one, and one 64 MiB-aligned mapping of HEAP_MAX per other."""
    maps = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        maps.append((start, end, fields[1], len(fields) > 5))
    ends = {end for _, end, _, named in maps if not named}
    heaps = sum(1 for start, end, perms, named in maps
                if not named and perms.startswith("rw") and start % HEAP_MAX == 0 and start + HEAP_MAX in ends | {end})  # fmt: skip
    return 1 + heaps


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_serve_runs_with_at_most_malloc_arenas(tmp_path):
    """Every thread (event loop, store writer, compression, executor, uvloop's) allocates; the arenas
    stay at ``MALLOC_ARENAS`` (glibc's default: up to 8 per core)."""
    with CollectorProcess(tmp_path) as collector:
        for _ in range(20):
            post_batch(collector.url, 50)
        threads = len(os.listdir(f"/proc/{collector.proc.pid}/task"))
        assert threads > MALLOC_ARENAS
        assert glibc_arenas(collector.proc.pid) <= MALLOC_ARENAS


LARGE_BLOCKS = textwrap.dedent(
    """
    import ctypes, sys
    from collector.serve.runtime import tune_malloc

    def heap_kb():
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith("[heap]"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                return (end - start) // 1024
        return 0

    if sys.argv[1] == "tuned":
        assert tune_malloc()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    libc.free(libc.malloc(4 << 20))  # a freed 4 MB block of its own: glibc's own rule raises the threshold to 4 MB
    before = heap_kb()
    blocks = [libc.malloc(200_000) for _ in range(50)]  # 10 MB of 200 KB blocks, like a request's buffers
    print(heap_kb() - before)
    """
)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_large_blocks_keep_mappings_of_their_own(tmp_path):
    """After ``tune_malloc`` a block of 128 KiB or more is always a mapping of its own, returned to the
    system when freed; glibc alone would cut it from the heap once a larger block had been freed."""
    script = tmp_path / "large.py"
    script.write_text(LARGE_BLOCKS)
    root = Path(__file__).resolve().parents[2]
    grown = {mode: int(subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=60,
                                      check=True, cwd=root).stdout)  # fmt: skip
             for mode in ("default", "tuned")}
    assert grown["default"] > 9_000, grown  # the test sees the heap take them
    assert grown["tuned"] < 1_000, grown


FRAGMENTED = textwrap.dedent(
    """
    import asyncio, sys
    from collector.serve.runtime import trim_malloc_periodically

    def rss_kb():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))

    # 200 MB of 2 KB blocks in the heap, then every one freed but a small block between each 64:
    # the heap's top stays in use, so free() alone returns nothing to the system
    blocks = [bytes(2000) for _ in range(100_000)]
    pins = [bytes(600) for _ in range(0, len(blocks), 64)]
    keep = blocks[::64]
    del blocks
    print("fragmented", rss_kb(), flush=True)

    async def main():
        trimming = asyncio.create_task(trim_malloc_periodically(0.05))
        for _ in range(int(sys.argv[1])):
            await asyncio.sleep(0.05)
            print("rss", rss_kb(), flush=True)
        trimming.cancel()

    asyncio.run(main())
    """
)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_the_periodic_trim_hands_free_heap_pages_back(tmp_path):
    script = tmp_path / "fragmented.py"
    script.write_text(FRAGMENTED)
    out = subprocess.run([sys.executable, str(script), "40"], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout  # fmt: skip
    fragmented = int(re.search(r"fragmented (\d+)", out).group(1))
    lowest = min(int(kb) for kb in re.findall(r"rss (\d+)", out))
    assert fragmented > 150_000, out
    assert lowest < fragmented - 100_000, out  # at least 100 of the ~190 freed MB went back


def test_addresses_of_one_place_share_one_cached_location(geo_db):
    """The geo cache holds up to 10,000 addresses; those of one place share one ``context.location``
    (under the overload, thousands of addresses in a few hundred networks)."""
    from collector.ingest.enrich.geo import Geo

    geo = Geo(geo_db)
    try:
        london = [geo.locate(f"203.0.113.{n}") for n in range(1, 50)]
        paris = geo.locate("198.51.100.7")
        assert london[0] == {"country": "United Kingdom", "countryCode": "GB", "region": "England", "city": "London",
                             "latitude": 51.5142, "longitude": -0.0931, "timezone": "Europe/London"}  # fmt: skip
        assert all(each is london[0] for each in london)
        assert paris is not london[0] and paris["city"] == "Paris"
        assert geo.locate("192.0.2.1") is None
    finally:
        geo.close()


def test_cached_agents_share_their_os_and_browser():
    """The user-agent cache holds up to 10,000 agents; their os and browser dicts (a few hundred
    distinct among thousands of agents) are shared, and the answers are unchanged."""
    from collector.ingest.enrich.useragent import UserAgentParser

    chrome = "Mozilla/5.0 ({}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{} Safari/537.36"
    parse = UserAgentParser().parse
    windows = parse(chrome.format("Windows NT 10.0; Win64; x64", "120.0.0.0"))
    linux = parse(chrome.format("X11; Linux x86_64", "120.0.0.0"))
    newer = parse(chrome.format("Windows NT 10.0; Win64; x64", "121.0.0.0"))
    assert windows["browser"] == {"name": "Chrome", "version": "120.0.0"}
    assert windows["os"] == {"name": "Windows", "version": "10"} and linux["os"] == {"name": "Linux", "version": None}
    assert windows["browser"] is linux["browser"] and windows["os"] is newer["os"]
    assert newer["browser"] == {"name": "Chrome", "version": "121.0.0"}
