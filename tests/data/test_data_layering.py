"""The data layer imports only layer-0 modules of gaunt_md (see ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import gaunt_md.data

ALLOWED = {"gaunt_md.data", "gaunt_md.errors", "gaunt_md.native", "gaunt_md.units"}


def test_data_modules_import_no_higher_layer() -> None:
    package = Path(gaunt_md.data.__file__).parent
    offenders = []
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("gaunt_md") and not any(name == a or name.startswith(a + ".") for a in ALLOWED):
                    offenders.append(f"{source.name}: {name}")
    assert offenders == []
    assert len(list(package.glob("*.py"))) >= 6
