"""The import layering of docs/DESIGN: objectives below runs, workflows above them, no import cycles in data/.

Read from the source with ast (imports inside functions count too), so a lazy import cannot hide a layer break.
"""

import ast
from pathlib import Path

import pytest

import straightflow

PACKAGE = Path(straightflow.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute names (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _under(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("path", sorted((PACKAGE / "methods").glob("*.py")), ids=lambda p: p.name)
def test_methods_import_no_runs_training_or_workflows(path):
    above = ("straightflow.runs", "straightflow.training", "straightflow.pipelines", "straightflow.evaluation",
             "straightflow.image_evaluation", "straightflow.density", "straightflow.hub", "straightflow.cli")
    assert _under(imported_modules(path), above) == []


def test_image_and_vector_sources_do_not_import_each_other():
    images = imported_modules(PACKAGE / "data" / "images.py")
    assert _under(images, ("straightflow.data.source",)) == []  # the base class lives in data/base.py
    assert _under(imported_modules(PACKAGE / "data" / "base.py"), ("straightflow.data",)) == []


def test_nothing_outside_the_command_line_imports_it():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" not in path.relative_to(PACKAGE).parts and path.name != "__main__.py":
            assert _under(imported_modules(path), ("straightflow.cli",)) == [], path
