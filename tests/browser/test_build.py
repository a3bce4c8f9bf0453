"""The shipped tag: what the collector serves is a fresh build of tag/src, within the size budget."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import urllib.request

import pytest

from harness import ROOT

TAG = ROOT / "tag"
SHIPPED = ROOT / "collector" / "static" / "intilery.js"
BUDGET = 4096  # bytes, gzip -9
ANALYTICS_JS = 30 * 1024  # Segment's analytics.js, gzip: about 30 KB


def gzip9(data: bytes) -> int:
    """The size ``gzip -9`` gives (the gzip tool when present, else Python's zlib at level 9)."""
    if shutil.which("gzip"):
        return len(subprocess.run(["gzip", "-9", "-n", "-c"], input=data, capture_output=True, check=True).stdout)
    return len(gzip.compress(data, 9, mtime=0))


def test_shipped_tag_is_a_fresh_build_of_the_source():
    """collector/static/intilery.js must equal what `npm run build` makes from tag/src today."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not installed: cannot rebuild the tag to compare (apt-get install nodejs npm)")
    if not (TAG / "node_modules" / "esbuild").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TAG, check=True, timeout=600,
                       capture_output=True)  # fmt: skip
    check = subprocess.run(["node", "build.mjs", "--check"], cwd=TAG, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr + check.stdout


def test_served_tag_fits_the_size_budget(collector, capsys):
    """GET /intilery.js serves the shipped file, and it is at most 4,096 bytes gzip -9."""
    with urllib.request.urlopen(collector.url + "/intilery.js") as r:
        served = r.read()
        content_type = r.headers["Content-Type"]
    assert served == SHIPPED.read_bytes()
    assert "javascript" in content_type
    size = gzip9(served)
    with capsys.disabled():
        print(f"\nintilery.js: {len(served)} bytes, {size} bytes gzip -9 (budget {BUDGET}; "
              f"analytics.js about {ANALYTICS_JS // 1024} KB, {ANALYTICS_JS / size:.0f}x larger)")  # fmt: skip
    assert size <= BUDGET, f"intilery.js is {size} bytes gzip -9, over the {BUDGET}-byte budget"
    assert b"eval(" not in served and b"new Function" not in served  # strict CSP: no eval
