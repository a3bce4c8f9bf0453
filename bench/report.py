"""Writing a benchmark run into bench/README.md, between two markers, and judging the targets."""

from __future__ import annotations

import time
from pathlib import Path

BEGIN = "<!-- results:begin (written by python -m bench.run --readme) -->"
END = "<!-- results:end -->"

# issue 5's targets
SINGLE_RATIO = 0.6
BATCH_EVENTS = 50_000
BATCH_P99_MS = 50.0
MICRO_US = 15.0
RSS_MB = 150.0


def targets(rows: list[dict], over: dict | None, micro: list[dict] | None) -> list[str]:
    """One line per target: met or missed, with the number that decides it."""
    by_name = {r["name"]: r for r in rows}
    out = []
    single = by_name.get("collector single, fsync=always")
    if single:
        ok = single["ratio"] >= SINGLE_RATIO
        out.append(f"- single events, fsync=always: {single['ratio']:.2f} x the ceiling (median of rounds "
                   f"{', '.join(f'{x:.2f}' for x in single['ratios'])}); target >= {SINGLE_RATIO}: "
                   f"**{'met' if ok else 'missed'}**")  # fmt: skip
    batch = by_name.get("collector batch, fsync=always")
    if batch:
        ok = batch["events_per_s"] >= BATCH_EVENTS and batch["p99_ms"] <= BATCH_P99_MS
        out.append(f"- batched, fsync=always, one worker: {batch['events_per_s']:,.0f} events/s with p99 "
                   f"{batch['p99_ms']:.0f} ms; target >= {BATCH_EVENTS:,} events/s with p99 <= {BATCH_P99_MS:.0f} ms: "
                   f"**{'met' if ok else 'missed'}**")  # fmt: skip
    if micro:
        warm = next((m for m in micro if m["case"].startswith("warm UA cache, geo on")), None)
        if warm:
            ok = warm["best_us"] <= MICRO_US
            out.append(f"- per-event path, warm user-agent cache, geo on: {warm['best_us']:.1f} µs (best; median "
                       f"{warm['median_us']:.1f}); target <= {MICRO_US:.0f} µs: **{'met' if ok else 'missed'}**")  # fmt: skip
    if over:
        growth = over["rss_late_mb"] - over["rss_early_mb"]
        ok_peak = over["peak_rss_mb"] <= RSS_MB
        out.append(f"- RSS under overload: peak {over['peak_rss_mb']:.0f} MB; target <= {RSS_MB:.0f} MB: "
                   f"**{'met' if ok_peak else 'missed'}**; growth from the second sixth to the last sixth of the "
                   f"run {growth:+.0f} MB: **{'none' if growth <= 5 else 'growing'}**")  # fmt: skip
    return out


def update_readme(path: Path, machine: str, command: str, body: str) -> None:
    """Replace the results section of ``path`` (or append one) with this run."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = "\n".join([BEGIN, "", f"Run {stamp} on {machine}.", "", f"Command: `{command}`", "", body, "", END])
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
