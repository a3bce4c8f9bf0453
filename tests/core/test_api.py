"""The API table (collector/api.py) is what the code raises, routes and documents."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from collector import api, errors
from collector.app import create_app

ROOT = Path(__file__).resolve().parents[2]
RAISED = re.compile(r"\b(" + "|".join(c.__name__ for c in errors.CollectorError.__subclasses__()) + r'|Invalid)\(\s*"([a-z_]+)"')


def raised_in_the_code() -> list[tuple[str, str, str]]:
    """``(file, class, code)`` of every error the collector constructs with a literal code."""
    found = []
    for path in sorted((ROOT / "collector").rglob("*.py")):
        for cls, code in RAISED.findall(path.read_text()):
            found.append((path.relative_to(ROOT).as_posix(), cls, code))
    return found


def test_every_code_the_code_raises_is_in_the_table_with_its_status():
    """A code raised anywhere is in the table, and the class raising it answers the table's status."""
    found = raised_in_the_code()
    assert len(found) > 25
    for where, cls, code in found:
        if cls == "Invalid":  # a message's code: listed in a batch answer, or the 400 of a single path
            assert code in api.MESSAGE_CODES, f"{where}: {code} is not a message code of collector/api.py"
            continue
        if code in api.PIXEL_CODES:
            continue
        table = api.PROFILE_ERRORS if where.startswith(("collector/profiles/", "collector/ingest/access.py", "collector/console/",
                                                          "collector/engage/")) else api.ERRORS
        if where.startswith("collector/privacy/"):  # the same token and profile paths, and its own codes
            table = {**api.PROFILE_ERRORS, **api.PRIVACY_ERRORS}
        if where.startswith("collector/engage/destinations/"):  # the same token, and its own codes
            table = {**api.PROFILE_ERRORS, **api.DESTINATION_ERRORS}
        if where.startswith("collector/engage/journeys/"):  # the same token, and its own codes
            table = {**api.PROFILE_ERRORS, **api.JOURNEY_ERRORS}
        if where.startswith("collector/engage/email/"):  # the same token, and its own codes
            table = {**api.PROFILE_ERRORS, **api.CAMPAIGN_ERRORS}
        assert code in table, f"{where}: {code} is not in collector/api.py"
        assert getattr(errors, cls).status == table[code].status, f"{where}: {cls} for {code}"


def test_every_code_in_the_table_is_raised_somewhere():
    """No code is documented that the collector never answers."""
    raised = {code for _, _, code in raised_in_the_code()}
    body = (ROOT / "collector" / "ingest" / "body.py").read_text()
    unused = [code for code in {**api.ERRORS, **api.PROFILE_ERRORS, **api.PRIVACY_ERRORS, **api.DESTINATION_ERRORS,
                                  **api.CAMPAIGN_ERRORS}
              if code not in raised and f'"{code}"' not in body]  # fmt: skip
    assert unused == []


def test_the_app_serves_exactly_the_routes_of_the_table(config):
    """Every route of collector/api.py's table is routed (a GET answers HEAD too), and nothing else."""
    app = create_app(config)
    routed = {(r.method, r.resource.canonical) for r in app.router.routes()}
    expected = {(r.method, r.canonical) for r in api.ROUTES}
    expected |= {("HEAD", r.canonical) for r in api.ROUTES if r.method == "GET"}
    assert routed == expected


def test_the_openapi_document_describes_exactly_the_routes_of_the_table():
    """Every route of the table is in the shipped document, the console's JSON API included, and the
    document has no path the collector does not route (the one OPTIONS route under /v1/ is written
    under each path it answers)."""
    document = json.loads((ROOT / "collector" / "static" / "openapi.json").read_text())
    documented = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    table = {(r.method, r.canonical) for r in api.ROUTES if r.canonical != "/v1/{tail}"}
    assert table <= documented
    extra = documented - table
    assert extra and all(method == "OPTIONS" and path.startswith("/v1/") for method, path in extra), extra
    assert {("GET", "/console/api/dashboard"), ("POST", "/console/api/regulations")} <= documented


def test_the_openapi_document_is_the_table_serialised():
    """The shipped document is what scripts/openapi.py writes, and lists each status's codes from the table."""
    check = subprocess.run([sys.executable, "scripts/openapi.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    document = json.loads((ROOT / "collector" / "static" / "openapi.json").read_text())
    schemas = document["components"]["schemas"]
    for status, name in [(400, "BadRequestError"), (401, "UnauthorizedError"), (403, "ForbiddenError"),
                         (408, "TimeoutError"), (413, "TooLargeError"), (415, "UnsupportedError"),
                         (429, "RateLimitedError"), (503, "UnavailableError")]:  # fmt: skip
        assert schemas[name]["allOf"][1]["properties"]["code"]["enum"] == api.codes(status), name
    assert set(document["paths"]) >= {p for paths in api.SINGLE_ROUTES.values() for p in paths} | set(api.BATCH_ROUTES)


def test_the_bad_input_cases_answer_the_status_of_the_table():
    """Each case of tests/core/test_bad_input.py expects the status the table gives its code."""
    from tests.core.test_bad_input import CASES

    checked = 0
    for case in CASES:
        status = next(v for v in case.values if isinstance(v, int) and not isinstance(v, bool))
        code = next(v for v in case.values if isinstance(v, str) and v in api.ERRORS)
        assert api.ERRORS[code].status == status, case.id
        checked += 1
    assert checked >= 20


def test_the_tag_keeps_to_the_api_limits():
    """The tag's size limits and message expiry are the collector's, so the two cannot drift."""
    import re
    from pathlib import Path

    from collector.config import Config

    tag = Path(__file__).resolve().parents[2] / "tag" / "src"
    constants = {
        name: float(value)
        for source in ("index.js", "queue.js")
        for name, value in re.findall(r"^const ([A-Z_]+) = ([0-9.e]+)", (tag / source).read_text(), re.M)
    }
    assert constants["MAX_MESSAGE"] == api.MAX_MESSAGE_BYTES
    assert constants["MAX_BODY"] <= api.MAX_BODY_BYTES
    assert constants["WINDOW"] == Config().dedup_window_hours * 3600 * 1000
