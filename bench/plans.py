"""Tracking plans: jsonschema-rs against fastjsonschema on our events, to choose the validator.

The plan is drafted (``collector.plans.infer``) from the workload's events, so its schemas
are the ones ``intilery plan infer`` would write for this traffic (types, required fields,
enums, formats). Each validator compiles every schema once, then checks the ``properties``
(or ``traits``) of every event: as sent (all valid), and with one property of the wrong
type (every event invalid, the errors collected)::

    python -m bench.plans                       # 20,000 events, best of 7
    python -m bench.plans --events 50000 --repeat 9

µs per event, best of ``--repeat`` passes (the median beside it). fastjsonschema stops at
the first error (it raises); jsonschema-rs is asked ``is_valid`` first, then for every error
of an invalid event (what ``Plan.violations`` does).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import fastjsonschema
import jsonschema_rs

from bench.workload import Workload
from collector.plans.infer import infer

CALL_FIELD = {"page": "properties", "screen": "properties", "identify": "traits", "group": "traits"}


def schemas_of(plan: dict) -> dict[tuple[str, str], dict]:
    """(type, event) -> schema, for every schema of the plan."""
    out = {("track", name): schema for name, schema in plan["track"].items()}
    out.update({(kind, ""): plan[kind] for kind in CALL_FIELD if kind in plan})
    return out


def key(message: dict) -> tuple[str, str]:
    return (message["type"], message.get("event", "") if message["type"] == "track" else "")


def instance(message: dict) -> Any:
    return message.get(CALL_FIELD.get(message["type"], "properties")) or {}


def broken(message: dict) -> dict:
    """The message with its first property (or trait) of the wrong type."""
    values = dict(instance(message))
    first = next(iter(values), "x")
    values[first] = [values.get(first)]
    return {**message, CALL_FIELD.get(message["type"], "properties"): values}


def rs_checker(schemas: dict) -> Callable[[dict], list]:
    compiled = {k: jsonschema_rs.Draft202012Validator(s, validate_formats=True) for k, s in schemas.items()}

    def check(message: dict) -> list:
        validator = compiled.get(key(message))
        data = instance(message)
        if validator is None or validator.is_valid(data):
            return []
        return [e.message for e in validator.iter_errors(data)]

    return check


def fast_checker(schemas: dict) -> Callable[[dict], list]:
    compiled = {k: fastjsonschema.compile(s) for k, s in schemas.items()}

    def check(message: dict) -> list:
        validate = compiled.get(key(message))
        if validate is None:
            return []
        try:
            validate(instance(message))
        except fastjsonschema.JsonSchemaValueException as exc:
            return [exc.message]
        return []

    return check


def timed(check: Callable[[dict], list], messages: list[dict], repeat: int, expect_errors: bool) -> list[float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        found = sum(1 for m in messages if check(m))
        runs.append((time.perf_counter() - started) / len(messages) * 1e6)
        assert (found == len(messages)) if expect_errors else found == 0, f"{found} of {len(messages)} with errors"
    return runs


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="µs per event: jsonschema-rs vs fastjsonschema on a drafted plan")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    messages = [m for m in Workload(seed=3).messages(args.events) if m["type"] != "alias"]
    schemas = schemas_of(infer(messages).plan())
    invalid = [broken(m) for m in messages]
    rows = []
    for name, make in (("jsonschema-rs", rs_checker), ("fastjsonschema", fast_checker)):
        started = time.perf_counter()
        check = make(schemas)
        compile_ms = (time.perf_counter() - started) * 1e3
        valid, wrong = timed(check, messages, args.repeat, False), timed(check, invalid, args.repeat, True)
        rows.append({"validator": name, "compile_ms": compile_ms, "valid_us": min(valid), "valid_median": statistics.median(valid),
                     "invalid_us": min(wrong), "invalid_median": statistics.median(wrong)})  # fmt: skip
    print(f"{len(messages):,} events, {len(schemas)} schemas (drafted from them); best of {args.repeat} (median)")
    print("| validator | compile, ms | valid event, µs | invalid event, µs |")
    print("|---|--:|--:|--:|")
    for r in rows:
        print(f"| {r['validator']} | {r['compile_ms']:.1f} | {r['valid_us']:.2f} ({r['valid_median']:.2f}) | "
              f"{r['invalid_us']:.2f} ({r['invalid_median']:.2f}) |")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
