"""Hypothesis settings for the fuzz and contract tests.

Every property test here takes its settings from ``fuzz_settings(n)``: ``n`` examples by
default (sized so the whole fuzz + contract budget stays around a minute on two cores),
or ``INTILERY_FUZZ_EXAMPLES`` examples for each when that variable is set, e.g.::

    INTILERY_FUZZ_EXAMPLES=2000 python -m pytest tests/hardening/test_fuzz.py tests/hardening/test_contract.py

The profile ``intilery-fuzz`` (no deadline, no example database, slow-example health checks
off) is registered here and is the parent of every such test's settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES_VARIABLE = "INTILERY_FUZZ_EXAMPLES"

settings.register_profile(
    "intilery-fuzz",
    deadline=None,  # each request has its own timeout; a slow example is not a failure
    database=None,  # nothing written under the work tree; failures print their reproduction
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # the fixtures check once per test, after all its examples
    ],
)


def fuzz_examples(default: int) -> int:
    """``default``, or ``INTILERY_FUZZ_EXAMPLES`` when it is set."""
    value = os.environ.get(EXAMPLES_VARIABLE, "").strip()
    return int(value) if value else default


def fuzz_settings(default_examples: int) -> settings:
    return settings(settings.get_profile("intilery-fuzz"), max_examples=fuzz_examples(default_examples))
