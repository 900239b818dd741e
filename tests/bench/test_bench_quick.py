"""The benchmarks still run: ``python -m bench --quick`` (tiny sizes) exits 0.

Nothing is timed here; this only keeps ``make bench`` from rotting between the
runs that record figures. ``--quick`` writes to temporary folders, never over the
recorded ``bench/results``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

pytestmark = pytest.mark.integration


def _recorded() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(RESULTS.glob("*"))
        if ".quick." not in p.name
    }


def test_every_benchmark_runs_at_tiny_sizes_and_leaves_the_recorded_figures() -> None:
    before = _recorded()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for line in done.stderr.splitlines():
        if ": exit " in line:
            assert line.split(": exit ")[1].startswith("0 "), line
    assert _recorded() == before
