"""Azure SDK imports live only in the adapters (the domain owns its ports)."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _azure_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if a.name.split(".")[0] in ("azure", "azurefunctions")
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "azure",
            "azurefunctions",
        ):
            found.append(str(node.module))
    return found


def test_only_adapters_import_azure_sdks() -> None:
    domain = list(SHARED.glob("*.py"))
    assert domain, "shared/ has no modules?"
    offenders = {p.name: _azure_imports(p) for p in domain if _azure_imports(p)}
    assert offenders == {}


def test_adapters_do_import_them() -> None:
    # The check above would pass vacuously if it looked in the wrong place.
    assert _azure_imports(SHARED / "adapters" / "tables.py")
