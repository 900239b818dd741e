"""Parse every ``.bicep`` file under a folder with pycep; print one JSON document.

Runs in the IaC virtualenv (``.venv-iac``, see requirements-iac.txt), not the
app's: pycep-parser is pinned there by checkov. Output::

    {"files": {"main.bicep": {...parsed...}, "app/api.bicep": {...}},
     "errors": {"app/x.bicep": "line 3: unexpected token ..."}}

Exit status 1 if any file fails to parse, so ``make check-infra`` fails on it.

    .venv-iac/bin/python tests/infra/parse_bicep.py infra [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pycep import BicepParser


def parse_tree(root: Path) -> dict[str, dict[str, object]]:
    parser = BicepParser()
    files: dict[str, object] = {}
    errors: dict[str, object] = {}
    for path in sorted(root.rglob("*.bicep")):
        name = path.relative_to(root).as_posix()
        try:
            files[name] = parser.parse(file_path=path)
        except Exception as exc:  # lark raises many kinds; each is a parse failure
            errors[name] = " ".join(str(exc).split())[:500] or type(exc).__name__
    return {"files": files, "errors": errors}


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("root", type=Path)
    cli.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = cli.parse_args()
    result = parse_tree(args.root)
    text = json.dumps(result, default=str)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    for name, error in result["errors"].items():
        print(f"bicep parse error: {args.root / name}: {error}", file=sys.stderr)
    if not result["files"] and not result["errors"]:
        print(f"no .bicep files under {args.root}", file=sys.stderr)
        return 1
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
