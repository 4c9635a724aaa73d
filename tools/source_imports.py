"""What a Python source file imports, read from its syntax tree (no code runs).

Shared by the import-direction test (tests/test_architecture.py) and tools/gate_inputs.py.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path


def first_party_imports(path: Path, packages: Collection[str]) -> set[str]:
    """Modules of `packages` that `path` imports, anywhere in the file (imports inside functions count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from qa import backends` imports the module qa.backends.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in packages)
    return found
