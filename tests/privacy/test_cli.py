"""``intilery privacy``: the same requests from the shell, on a data directory with no collector running."""

from __future__ import annotations

import json
import subprocess
import sys

from privacy.people import ANN, BOB, events_of, mentions, person_ids, seed


def intilery(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True, timeout=120)
    assert not check or done.returncode == 0, done.stderr
    return done


def test_erase_export_and_status_from_the_shell(tmp_path):
    data_dir = tmp_path / "data"
    seed(data_dir, [ANN, BOB])
    intilery("profiles", "--once", "--data-dir", str(data_dir))
    bob = events_of(data_dir, BOB)

    exported = intilery("privacy", "export", f"user_id:{BOB['user']}", "--data-dir", str(data_dir)).stdout
    lines = [json.loads(line) for line in exported.splitlines()]
    assert lines[0]["type"] == "profile" and sorted(e["messageId"] for e in lines[1:]) == bob

    erased = intilery("privacy", "erase", "--email", ANN["email"], "--data-dir", str(data_dir))
    record = json.loads(erased.stdout)
    assert record["status"] == "FINISHED" and record["identifiers"] == len(person_ids(ANN))
    assert "segments" in erased.stderr  # the progress bar
    assert mentions(data_dir, person_ids(ANN)) == {}
    assert events_of(data_dir, BOB) == bob

    listed = intilery("privacy", "status", "--data-dir", str(data_dir)).stdout
    assert record["regulateId"] in listed and "FINISHED" in listed
    assert intilery("privacy", "status", "reg_unknown", "--data-dir", str(data_dir), check=False).returncode == 1
    missing = intilery("privacy", "export", f"email:{ANN['email']}", "--data-dir", str(data_dir), check=False)
    assert missing.returncode == 1 and "no profile" in missing.stderr
