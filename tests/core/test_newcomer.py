"""What a newcomer meets on the README's walk (issue 35): each stumble answered with a clear line.

Every command here is the real ``python -m collector`` in a subprocess, as a user runs it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

from collector.config import load_config
from collector.serve.demo import DEMO_WRITE_KEY, demo_config
from helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
DEADLINE = 60.0


def run(*args: str, cwd: Path, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def write_events(data_dir: Path, events: list[dict]) -> None:
    """Stored events as the file store lays them out (one closed-hour partition)."""
    part = data_dir / "events" / "dt=2026-11-28" / "hr=13"
    part.mkdir(parents=True)
    (part / "part-t_0-000001.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


STORED = [{"type": "track", "event": "Signed Up", "source": "demo", "messageId": f"m{i}", "userId": "user-42",
           "properties": {"plan": "pro"}, "receivedAt": "2026-11-28T13:00:00.000Z"} for i in range(3)]  # fmt: skip


class TestTheDemo:
    def test_the_demo_accepts_the_key_it_writes_to_dev_write_key(self, tmp_path):
        """The demo keeps the dev source next to its own, so ``cat data/dev-write-key`` is a working key."""
        config = demo_config(load_config(None, {"data_dir": str(tmp_path / "data")}, environ={}), "http://127.0.0.1:8000")
        key = (tmp_path / "data" / "dev-write-key").read_text().strip()
        assert {s.write_key for s in config.sources} == {key, DEMO_WRITE_KEY}


class TestConfiguration:
    def test_an_intilery_toml_in_the_working_directory_is_named_and_not_silently_ignored(self, tmp_path):
        """serve names the configuration it runs with, and says so when ./intilery.toml is there but unused."""
        (tmp_path / "intilery.toml").write_text('[[source]]\nname = "web"\nwrite_key = "wk_x"\n')
        port = free_port()
        log = tmp_path / "serve.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "collector", "serve", "--port", str(port), "--no-profiles"],
                                    cwd=tmp_path, env=ENV, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
            try:
                wait_until(lambda: proc.poll() is not None or "paste this" in log.read_text(), timeout=DEADLINE,
                           what="the banner")  # fmt: skip
            finally:
                proc.terminate()
                proc.wait(DEADLINE)
        text = log.read_text()
        assert "config:     none" in text, text
        assert "./intilery.toml is not read: pass --config intilery.toml" in text, text


class TestPlans:
    def test_infer_into_a_folder_that_does_not_exist_makes_it(self, tmp_path):
        """``--out plans/web.yaml`` without ``plans/``: the folder is made, no traceback."""
        write_events(tmp_path / "data", STORED)
        done = run("plan", "infer", "--data-dir", "data", "--source", "demo", "--out", "plans/web.yaml", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Signed Up" in (tmp_path / "plans" / "web.yaml").read_text()

    def test_infer_to_a_path_it_cannot_write_is_one_line_and_exit_2(self, tmp_path):
        """A file where the folder should be: a one-line error before the store is read, exit 2."""
        write_events(tmp_path / "data", STORED)
        (tmp_path / "plans").write_text("a file, not a folder")
        done = run("plan", "infer", "--data-dir", "data", "--out", "plans/web.yaml", cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.startswith("intilery: cannot write plans/web.yaml"), done.stderr

    @pytest.mark.parametrize("action", ["infer", "check"])
    def test_a_source_with_no_events_is_an_error_naming_the_sources_seen(self, tmp_path, action):
        """``--source web`` on a store without web events: exit 1, the sources that are there, no empty plan."""
        write_events(tmp_path / "data", STORED)
        (tmp_path / "plan.yaml").write_text("track: {}\nunplanned: allow\n")
        extra = ["--out", "plans/web.yaml"] if action == "infer" else ["--plan", "plan.yaml"]
        done = run("plan", action, "--data-dir", "data", "--source", "web", *extra, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert "no events from source 'web' (sources seen: demo)" in done.stderr
        assert not (tmp_path / "plans" / "web.yaml").exists()


class TestBusyPort:
    @pytest.mark.parametrize("command", [["serve"], ["serve", "--workers", "2"], ["demo"]], ids=["serve", "workers", "demo"])
    def test_a_port_in_use_is_one_line_and_exit_2(self, tmp_path, command):
        """The port taken: one line naming it and the flag to pass, exit 2, no traceback (nor ten)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = run(*command, "--port", str(port), "--data-dir", "data", "--no-profiles", cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert f"port {port} on 127.0.0.1 is in use" in done.stderr and "--port" in done.stderr, done.stderr

    def test_the_demo_names_site_port_when_the_shop_port_is_taken(self, tmp_path):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = run("demo", "--port", str(free_port()), "--site-port", str(port), "--data-dir", "data",
                       "--no-profiles", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"port {port} on 127.0.0.1 is in use" in done.stderr and "--site-port" in done.stderr, done.stderr


class TestSnippet:
    @pytest.mark.parametrize("host", ["URL", "ftp://x", "http://", "collect.example.com"])
    def test_a_host_that_is_not_a_url_or_a_path_is_one_line_and_exit_2(self, tmp_path, host):
        """--host is the collector's http(s) URL or a path of the site; anything else is said at once."""
        done = run("snippet", "--write-key", "wk_x", "--host", host, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == ""
        assert "--host" in done.stderr and "http" in done.stderr, done.stderr

    @pytest.mark.parametrize("host", ["https://collect.example.com", "http://127.0.0.1:8080/", "/p"])
    def test_a_url_or_a_path_is_pasted(self, tmp_path, host):
        done = run("snippet", "--write-key", "wk_x", "--host", host, cwd=tmp_path)
        assert done.returncode == 0 and f'"wk_x","{host.rstrip("/")}"' in done.stdout


class TestAnswers:
    @pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
    async def test_a_bad_timestamp_is_named_by_the_field_the_client_sent(self, client, field):
        """``"timestamp": "yesterday"`` is reported as timestamp, not as originalTimestamp."""
        answer = await client.post("/v1/track", json={"userId": "u", "event": "E", field: "yesterday"},
                                   headers={"X-Write-Key": "wk_server"})  # fmt: skip
        body = await answer.json()
        assert (answer.status, body["code"]) == (400, "invalid_timestamp")
        assert body["message"].startswith(f"{field} "), body["message"]


class TestAddress:
    def test_an_address_not_of_this_machine_is_one_line_and_exit_2(self, tmp_path):
        """--host 203.0.113.9 (not an address here): one line saying so, exit 2, no traceback."""
        done = run("serve", "--host", "203.0.113.9", "--port", str(free_port()), "--data-dir", "data", "--no-profiles",
                   cwd=tmp_path)  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "cannot listen on 203.0.113.9" in done.stderr and "--host" in done.stderr, done.stderr
