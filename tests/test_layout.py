"""The layout of the test suite itself: shared helpers live in ``tests/support`` (or a
conftest.py), so no test module is imported by another one."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def is_test_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "tests" and any(part.startswith("test_") for part in parts[1:])


def imports_of_test_modules() -> list[str]:
    """Every ``import tests...test_x`` / ``from tests... import test_x`` under tests/, located."""
    found: list[str] = []
    for path in sorted(TESTS.rglob("*.py")):
        where = path.relative_to(TESTS.parent)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if is_test_module(node.module) else []
                names += [f"{node.module}.{alias.name}" for alias in node.names if not names]
            else:
                continue
            found += [f"{where}:{node.lineno}: {name}" for name in names if is_test_module(name)]
    return found


def test_no_test_module_imports_another() -> None:
    found = imports_of_test_modules()
    assert not found, "move shared helpers to tests/support/ or a conftest.py:\n" + "\n".join(found)


# Test directories that hold no package's tests: helpers, data, whole-system scenarios, and the
# documentation site (docs/, mkdocs.yml).
NOT_PACKAGES = {"support", "corpus", "messages", "e2e", "spf", "docs"}


def test_test_directories_mirror_the_packages_of_sinkd() -> None:
    package_root = TESTS.parent / "sinkd"
    strays = [
        str(directory.relative_to(TESTS))
        for directory in sorted(TESTS.rglob("*"))
        if directory.is_dir()
        and any(directory.glob("test_*.py"))
        and not NOT_PACKAGES & set(directory.relative_to(TESTS).parts)
        and not (package_root / directory.relative_to(TESTS) / "__init__.py").is_file()
    ]
    assert not strays, f"test directories with no sinkd package of that name: {strays}"
