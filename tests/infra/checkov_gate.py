"""Fail on a checkov JSON report with parse errors or failed checks.

checkov exits 0 when it cannot parse a file (the file is then silently not
checked), so ``make check-infra`` runs it with ``-o json`` and lets this
script decide: any parsing error or failed check fails, with one line each.
Skips are listed with their reasons (each is justified in place, next to the
resource, as ``// checkov:skip=CKV_...: reason``).

    python tests/infra/checkov_gate.py REPORT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def problems(report: Any) -> tuple[list[str], list[str]]:
    """(failures, skips) of a checkov report (one framework: an object; several: a list)."""
    reports = report if isinstance(report, list) else [report]
    failures: list[str] = []
    skips: list[str] = []
    checked = 0
    for part in reports:
        summary = part.get("summary", {})
        results = part.get("results", {})
        checked += summary.get("passed", 0) + summary.get("failed", 0)
        for path in results.get("parsing_errors", []):
            failures.append(f"parse error: {path}")
        if summary.get("parsing_errors", 0) and not results.get("parsing_errors"):
            failures.append(f"{summary['parsing_errors']} parse error(s)")
        for check in results.get("failed_checks", []):
            where = f"{check['file_path']} {check['resource']}"
            failures.append(f"{check['check_id']} {where}: {check['check_name']}")
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment", "").strip()
            skips.append(f"{check['check_id']} {check['file_path']} {check['resource']}: {reason}")
            if not reason or reason == "No comment provided":
                failures.append(
                    f"{check['check_id']} on {check['resource']} is skipped without a reason"
                )
    if checked == 0:
        failures.append("checkov checked nothing (no Bicep resources found?)")
    return failures, skips


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = Path(sys.argv[1]).read_text()
    try:
        report = json.loads(text)
    except ValueError:
        print(f"checkov did not produce a JSON report:\n{text[:2000]}", file=sys.stderr)
        return 1
    failures, skips = problems(report)
    for line in skips:
        print(f"checkov skip (justified in place): {line}")
    for line in failures:
        print(f"checkov FAILED: {line}", file=sys.stderr)
    if not failures:
        print(f"checkov: no failed checks, no parse errors ({len(skips)} justified skips)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
