"""Every import between the package's folders points down a layer (lazy imports inside
functions included), so a stage never reaches up into what runs it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A module may import from its own unit or from a unit of a lower layer.
LAYERS = (
    ("geometry", "config", "metrics", "cache", "progress", "logs", "rtp", "graphs"),
    ("device", "models", "dali"),
    ("records", "ingest"),
    ("tracks",),
    ("decode",),
    ("engine",),
    ("sinks",),
    ("pipeline",),
    ("service",),
    ("cluster",),
    ("tools",),
    ("cli",),
    ("__main__",),
)
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str | None:
    """The folder (or top-level module) of a ``dalistream`` module name; None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported ``dalistream`` module) for every import in ``path``, lazy ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dalistream") and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}" if node.module == "dalistream" else node.module)
                      for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("dalistream.")]
    return found


def _sources() -> list[tuple[str, Path]]:
    package = ROOT / "dalistream"
    sources = [("graphs", path) for path in (ROOT / "graphs").glob("*.py")]
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).with_suffix("")
        if relative.parts != ("__init__",):
            sources.append((relative.parts[0], path))
    return sources


def test_every_unit_has_a_layer() -> None:
    assert {unit for unit, _ in _sources()} <= set(LEVEL)


def test_imports_point_down() -> None:
    upward = []
    for unit, path in _sources():
        for line, module in _imports(path):
            target = _unit(module)
            if target is None or target == unit or target == "__version__":
                continue
            assert target in LEVEL, f"{path}:{line} imports {module}, whose unit has no layer"
            if LEVEL[target] >= LEVEL[unit]:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({unit}) imports {module} ({target})")
    assert not upward, "imports that do not point down a layer:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from dalistream.pipeline.runtime import Runtime\n")
    assert _imports(module) == [(2, "dalistream.pipeline.runtime")]
    assert LEVEL[_unit("dalistream.pipeline.runtime")] > LEVEL["engine"]
