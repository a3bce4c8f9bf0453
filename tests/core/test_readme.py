"""The README's shell examples, run in order as a newcomer runs them, against a demo this test starts.

The quick start's ``./scripts/demo.sh`` is ``intilery demo`` on free 127.0.0.1 ports (the script
builds ``.venv`` and execs it); its banner must be the README's, but for the folder and ports.
Then every other ``sh`` block of the README runs, command by command, in one scratch folder (the
demo's working directory, so ``data/`` is its data directory), with ``intilery`` the command of
this checkout. Only the host and port are substituted. A command fails the test when it exits
non-zero or answers other than the ``# `` lines under it show (``…``: anything; a JSON answer
may hold more keys than shown). A read-only command (a GET, a lookup) is repeated until its
answer matches or a deadline passes: the profile builder takes events in within a second.

A block the test cannot run is marked just above it, with the reason:
``<!-- not run by tests/core/test_readme.py: REASON -->``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NOT_RUN = re.compile(r"^<!-- not run by tests/core/test_readme\.py: (.+) -->$")
DEMO = "./scripts/demo.sh"
DEADLINE = 60.0  # seconds a read-only command may take to show what the README shows (a deadline, not a measure: a loaded machine)
READ_ONLY = re.compile(r"^(curl(?!.*(?:\s-d\s|\s-X\s|--data))|intilery (?:profile |privacy (?:export|status)))")


@dataclass
class Command:
    line: int  # in README.md
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    commands: list[Command]
    not_run: str = ""


def blocks(text: str) -> list[Block]:
    """Every ``sh`` block of the README, split into commands with the ``# `` answer lines under each."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i] != "```sh":
            i += 1
            continue
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        reason = NOT_RUN.match(above)
        block, buffer, start, after_command = Block(i + 1, [], reason.group(1) if reason else ""), [], 0, False
        i += 1
        while lines[i] != "```":
            line = lines[i]
            if not buffer and line.startswith("#"):
                if after_command and line.startswith("# "):
                    block.commands[-1].expected.append(line[2:])
                i += 1
                continue
            if not buffer and not line.strip():
                after_command = False
                i += 1
                continue
            if not buffer:
                start = i + 1
            buffer.append(line)
            joined = "\n".join(buffer)
            code = re.sub(r"\s#\s[^']*$", "", line)  # a trailing comment's apostrophes do not open a quote
            if not (code.rstrip().endswith(("\\", "|")) or (joined.count("'") - line.count("'") + code.count("'")) % 2):
                block.commands.append(Command(start, joined))
                buffer, after_command = [], True
            i += 1
        found.append(block)
        i += 1
    return found


def wildcard(pattern: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("…")), re.S)


def json_within(expected, actual) -> bool:
    """``expected`` (the README's) holds for ``actual``: its keys there with such values, its lists as long."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and json_within(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(json_within, expected, actual))
    if isinstance(expected, str) and "…" in expected:
        return isinstance(actual, str) and bool(wildcard(expected).fullmatch(actual))
    return expected == actual and type(expected) is type(actual)


def answers(expected: list[str], out: str) -> bool:
    if not expected:
        return True
    try:
        wanted = json.loads("\n".join(expected))
    except ValueError:
        got = out.splitlines()
        return len(got) >= len(expected) and all(wildcard(e).fullmatch(g.rstrip()) for e, g in zip(expected, got))
    try:
        return json_within(wanted, json.loads(out))
    except ValueError:
        return False


class Shell:
    """The README's commands in one folder, variables (``KEY=...``) carried from one to the next."""

    def __init__(self, folder: Path, port: int, site_port: int) -> None:
        self.folder, self.port, self.site_port = folder, port, site_port
        bin_dir = folder.parent / "bin"
        bin_dir.mkdir(exist_ok=True)
        shim = bin_dir / "intilery"  # the checkout's command, as .venv/bin/intilery is a clone's
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m collector "$@"\n')
        shim.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
        self.state = folder.parent / "variables.sh"
        self.state.write_text("")

    def substitute(self, text: str) -> str:
        for host in ("localhost:8080", "127.0.0.1:8080"):
            text = text.replace(host, f"127.0.0.1:{self.port}")
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{self.site_port}")

    def run(self, command: Command) -> None:
        text = self.substitute(command.text)
        names = sorted(set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M)) | set(re.findall(r"^([A-Z_]+)=", self.state.read_text(), re.M)))
        keep = f"declare -p {' '.join(names)} 2>/dev/null | sed 's/^declare -- //' > {self.state}" if names else ":"
        script = f". {self.state}\n{text}\nstatus=$?\n{keep}\nexit $status\n"
        deadline = time.monotonic() + (DEADLINE if READ_ONLY.match(command.text) else 0)
        while True:
            done = subprocess.run(["bash", "-c", script], cwd=self.folder, env=self.env, capture_output=True, text=True,
                                  timeout=120)  # fmt: skip
            if done.returncode == 0 and answers(command.expected, done.stdout):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        what = f"README.md:{command.line}: {command.text}"
        assert done.returncode == 0, f"{what}\nexited {done.returncode}\n{done.stdout}{done.stderr}"
        pytest.fail(f"{what}\nanswered:\n{done.stdout}\nthe README shows:\n" + "\n".join(command.expected))


def banner_in_readme(text: str) -> list[str]:
    section = text.split("\n### What you will see\n", 1)[1]
    return section.split("\n```\n", 1)[1].split("\n```", 1)[0].splitlines()


def as_the_readme_prints(banner: list[str], folder: Path, port: int, site_port: int) -> list[str]:
    """The demo's banner with this run's folder, ports, command path and dev key as the README shows them."""
    text = "\n".join(banner).replace(f"127.0.0.1:{port}", "127.0.0.1:8080").replace(f"127.0.0.1:{site_port}", "127.0.0.1:8000")
    text = text.replace(str(folder.resolve()), "/home/you/intilery")
    text = re.sub(r"(watch them: )\S+( tail)", r"\1.venv/bin/intilery\2", text)
    text = re.sub(r"\(\S+( profile search)", r"(.venv/bin/intilery\1", text)
    text = re.sub(r"dev \(key wk_…\S{4},", "dev (key wk_…Xy9Q,", text)
    return text.splitlines()


def test_the_readme_blocks_are_all_run_or_say_why_not():
    """Every sh block is run by this test or marked with the reason it is not; the quick start's demo is first."""
    found = blocks(README.read_text())
    assert found and found[0].commands[0].text == DEMO
    for block in found:
        if block.not_run:
            assert len(block.not_run) > 10, f"README.md:{block.line}: say why it is not run"
        assert block.commands, f"README.md:{block.line}: an empty block"


def test_the_readme_examples_answer_as_shown(tmp_path):
    """From the quick start to privacy requests, each example run as written answers as the README shows."""
    missing = [tool for tool in ("bash", "curl", "gzip", "python3") if shutil.which(tool) is None]
    assert not missing, f"the README's examples need {', '.join(missing)}: install it (./scripts/test.sh does)"
    text = README.read_text()
    found = [b for b in blocks(text) if not b.not_run]
    folder = tmp_path / "walk"
    folder.mkdir()
    port, site_port = free_port(), free_port()
    shell = Shell(folder, port, site_port)
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(["intilery", "demo", "--port", str(port), "--site-port", str(site_port)], cwd=folder,
                                env={**shell.env, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: demo.poll() is not None or "Ctrl-C stops both." in log.read_text(), timeout=60, what="the demo's banner")
        assert demo.poll() is None, log.read_text()
        printed = log.read_text().split("intilery demo\n", 1)[1].split("Ctrl-C stops both.", 1)[0] + "Ctrl-C stops both."
        assert as_the_readme_prints(["intilery demo", *printed.splitlines()], folder, port, site_port) == banner_in_readme(text)
        assert found[0].commands[0].text == DEMO
        for block in found:
            for command in block.commands:
                if command.text != DEMO:
                    shell.run(command)
    finally:
        stop_process(demo)


def test_the_configuration_example_runs_as_written(tmp_path):
    """The Configuration section's intilery.toml, pasted as it is: serve starts with it (no root, no
    missing file) and prints the sources line the README shows."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    (tmp_path / "intilery.toml").write_text(section.split("```toml\n", 1)[1].split("```", 1)[0])
    shown = re.search(r"prints `(sources: [^`]+)`", section.replace("\n", " "))
    assert shown, "the section shows the banner's sources line"
    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "collector", "serve", "--config", "intilery.toml", "--port", str(port),
                                  "--no-profiles"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: serve.poll() is not None or "  store:" in log.read_text(), timeout=60, what="serve's banner")
        assert serve.poll() is None, log.read_text()
        printed = [" ".join(line.split()) for line in log.read_text().splitlines()]  # the banner aligns its labels
        assert " ".join(shown.group(1).split()) in printed, log.read_text()
    finally:
        stop_process(serve)
