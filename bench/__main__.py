"""``make bench``: run every benchmark, then gather their sections into ``bench/results.md``.

Each benchmark is a module of this package with a ``main(argv) -> int`` that
measures its figures against a reference measured in the same run and writes
``bench/results/<module>.md`` (one section) and ``.json`` (the raw figures).
Each runs in its own process, one after the other, so none disturbs another's
timings.

    .venv/bin/python -m bench                 # everything (about 10 minutes)
    .venv/bin/python -m bench p2_validation   # some of them
    .venv/bin/python -m bench --quick         # tiny sizes: checks that they run

A module that fails is reported and the others still run; the exit code is
then 1. ``results.md`` is written only from a full run (not ``--quick``), so
the committed figures never come from toy sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
REPORT = HERE / "results.md"

# In the order of issue 10's list. (bench.validate_from_blob, the older streaming
# bench with absolute figures, runs on its own.)
MODULES = ("p1_cold_start", "p2_validation", "p3_sweep", "p4_latency")


def _commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _machine() -> str:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def header(ran: list[str], failed: list[str]) -> str:
    when = dt.datetime.now(dt.UTC).isoformat(timespec="minutes")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({when}, commit `{_commit()}`, {_machine()}).",
        "Every figure is a ratio against a reference measured in the same run, in",
        "alternated pairs where the two are whole processes; medians with min-max. Absolute",
        "times on this shared machine move by 20-30% between runs: read the ratios.",
        "Each section gives the command that reruns it alone.",
        "",
        "Sections: " + ", ".join(ran) + ".",
    ]
    if failed:
        lines += ["", "**Failed in this run:** " + ", ".join(failed) + " (see the console)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks; write bench/results.md.")
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--quick", action="store_true", help="tiny sizes; results.md untouched")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (choose from {', '.join(MODULES)})")
    chosen = list(args.modules) or list(MODULES)
    failed: list[str] = []
    for index, name in enumerate(chosen, 1):
        extra = ["--quick"] if args.quick else []
        step = f"[{index}/{len(chosen)}]"
        print(f"{step} bench.{name} {' '.join(extra)}", file=sys.stderr, flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *extra], cwd=ROOT)
        took = time.monotonic() - started
        print(f"{step} {name}: exit {code} in {took:.0f} s", file=sys.stderr)
        if code != 0:
            failed.append(name)
    if args.quick:
        return 1 if failed else 0
    sections = [
        (RESULTS / f"{name}.md").read_text()
        for name in MODULES
        if name not in failed and (RESULTS / f"{name}.md").exists()
    ]
    REPORT.write_text("\n".join([header(chosen, failed), *sections]))
    print(f"wrote {REPORT.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
