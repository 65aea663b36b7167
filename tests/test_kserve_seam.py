"""The installed KServe still has every private name our seam relies on (predictor/serving/kserve_seam.py).

When a KServe upgrade breaks this, the failure names the symbol: fix the seam there, nowhere else.
"""

from __future__ import annotations

import ast
from pathlib import Path

from predictor.serving.kserve_seam import PRIVATE_NAMES, missing_private_names

PACKAGE = Path(__file__).resolve().parent.parent / "predictor"


def test_every_private_kserve_name_the_seam_uses_exists_in_the_installed_kserve() -> None:
    missing = missing_private_names()
    assert not missing, f"the installed KServe lacks {missing}: adapt predictor/serving/kserve_seam.py"


def test_a_name_kserve_lacks_is_reported_by_its_full_path() -> None:
    names = (*PRIVATE_NAMES, ("kserve.protocol.rest.server", "RESTServer._no_such_hook"))
    assert missing_private_names(names) == ["kserve.protocol.rest.server.RESTServer._no_such_hook"]


def _private_kserve_uses(path: Path) -> list[str]:
    """Private names imported from kserve, and private attributes read off KServe objects we subclass."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kserve"):
            found += [f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
    return found


def test_no_module_but_the_seam_imports_a_private_kserve_name() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): uses
        for path in PACKAGE.rglob("*.py")
        if path.name != "kserve_seam.py" and (uses := _private_kserve_uses(path))
    }
    assert offenders == {}
