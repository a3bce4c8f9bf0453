"""``intilery engage check``: each mistake as ``file:line: reason`` and exit 1, or what it found and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from collector.cli import main

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def good(root: Path) -> None:
    write(root / "audiences" / "vip.yaml", "name: VIP\ncondition:\n  trait: spend_30d\n  op: gt\n  value: 500\n")
    write(root / "audiences" / "lapsed_vip.yaml", "condition:\n  all:\n    - audience: vip\n"
                                                  "    - not: {event: Order Completed, within: 90d}\n")  # fmt: skip
    write(root / "audiences" / "gb.json", '{"condition": {"trait": "country", "value": "GB"}}')
    write(root / "traits" / "spend_30d.yaml", "kind: sum\nevent: Order Completed\nproperty: properties.revenue\nwithin: 30d\n")
    write(root / "traits" / "orders.yaml", "kind: count\nevent: Order Completed\n")


def check(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["engage", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_all_good_beside_the_configuration(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INTILERY_CONFIG", raising=False)
    monkeypatch.delenv("INTILERY_ENGAGE_DIR", raising=False)
    config = write(tmp_path / "site" / "intilery.toml", "")
    good(tmp_path / "site" / "engage")
    code, out, err = check(capsys, "--config", str(config))
    assert (code, out, err) == (0, f"{tmp_path / 'site' / 'engage'}/: 3 audiences, 2 computed traits, 0 destinations, 0 journeys, 0 templates: all good\n", "")


def test_every_mistake_and_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INTILERY_ENGAGE_DIR", raising=False)
    root = tmp_path / "defs"
    good(root)
    config = write(tmp_path / "intilery.toml", f"engage_dir = {str(root)!r}\n")
    vip = write(root / "audiences" / "vip.yaml", "name: VIP\ncondition:\n  trait: spend_30d\n  op: more\n  value: 500\n")
    orders = write(root / "traits" / "orders.yaml", "kind: count\nevent: Order Completed\nwithin: 90 days\n")
    gone = write(root / "audiences" / "gone.yaml", "condition:\n  audience: nobody\n")
    write(root / "audiences" / "draft.yml.txt", "anything")
    code, out, err = check(capsys, "--config", str(config))
    assert code == 1
    assert out.splitlines() == [
        f"{orders}:3: '90 days' is not a duration: write a whole number and s, m, h or d (30d, 2h, 15m, 10s)",
        f"{vip}:4: unknown operator 'more': use one of eq, ne, gt, gte, lt, lte, in, not_in, contains, starts_with, exists",
        f"{gone}:2: the condition names audience 'nobody', and there is none (audiences: gb, gone, lapsed_vip)",
    ]
    assert err.splitlines() == [f"{root}/audiences/draft.yml.txt: not read (a definition is a .yaml, .yml or .json file)",
                                f"intilery engage check: 3 mistakes in {root}/"]  # fmt: skip


def test_no_folder_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INTILERY_ENGAGE_DIR", raising=False)
    config = write(tmp_path / "intilery.toml", "")
    code, out, err = check(capsys, "--config", str(config))
    assert (code, out) == (1, "")
    assert err == (f"intilery: {tmp_path / 'engage'}/ is not a folder: nothing to check (the definitions' folder is engage/ "
                   "beside the configuration file, or in the current directory without one; engage_dir sets another)\n")  # fmt: skip
    config = write(tmp_path / "intilery.toml", f"engage_dir = {str(tmp_path / 'typo')!r}\n")
    code, out, err = check(capsys, "--config", str(config))
    assert code == 1 and "typo/ is not a folder: nothing to check (the definitions' folder is the configuration's engage_dir)" in err


def test_the_command_in_a_process(tmp_path):
    """``python -m collector engage check`` in the folder of the definitions, with INTILERY_ENGAGE_DIR as the setting."""
    good(tmp_path / "mine")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "INTILERY_ENGAGE_DIR": "mine"}
    done = subprocess.run([sys.executable, "-m", "collector", "engage", "check"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "mine/: 3 audiences, 2 computed traits, 0 destinations, 0 journeys, 0 templates: all good\n", "")
    write(tmp_path / "mine" / "audiences" / "vip.yaml", "condition: {trait: spend_30d, op: gt, value: ${THRESHOLD}}\n")
    done = subprocess.run([sys.executable, "-m", "collector", "engage", "check"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "mine/audiences/vip.yaml:1: ${THRESHOLD} is not set in the environment\n")
    done = subprocess.run([sys.executable, "-m", "collector", "engage", "check"], cwd=tmp_path, env={**env, "THRESHOLD": "500"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_destination_with_a_mistake_is_named_with_its_line_too(tmp_path, capsys):
    """The check covers engage/destinations/ with the rest (its own loader's problems)."""
    from collector.engage import cli

    root = tmp_path / "engage"
    (root / "destinations").mkdir(parents=True)
    (root / "destinations" / "crm.yaml").write_text("kind: webhook\nurl: https://crm.example/hook\nsecret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nfilter: {field: type, op: bogus, value: 1}\n")
    (tmp_path / "intilery.toml").write_text(f'engage_dir = "{root}"\n')

    class Args:
        config = str(tmp_path / "intilery.toml")

    assert cli.cmd_check(Args()) == 1
    out = capsys.readouterr().out
    assert f"{root / 'destinations' / 'crm.yaml'}:4: unknown operator 'bogus'" in out
