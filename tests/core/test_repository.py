"""The shape of the code: an import graph without circles, the log apart, the README's map true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "collector"
# What the log may import from the rest of the collector: shared values, never the HTTP side (nothing of
# collector.ingest); serve.runtime's new_loop is the event loop of the `intilery archive` command.
LOG_MAY_IMPORT = {"collector.config", "collector.errors", "collector.metrics",
                  "collector.logs", "collector.dedup", "collector.serve.runtime"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every collector module and the collector modules it imports (at the top or inside functions)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_nothing_imports_the_cli():
    """collector.cli is the top: no module of the collector imports it (but ``python -m collector``)."""
    assert [m for m, deps in imports().items() if "collector.cli" in deps and m != "collector.__main__"] == []


def test_the_import_graph_has_no_circle():
    """No module imports (even lazily, inside a function) a module that imports it back."""
    graph = imports()
    # a package's __init__ is imported by its submodules' import machinery, not by their code
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(path[path.index(dep):] + [dep] if dep in path else [module, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_log_imports_nothing_from_the_http_side():
    """collector.log.* imports only other log modules and shared values (config, errors, metrics)."""
    wrong = {
        module: sorted(d for d in deps if not d.startswith("collector.log") and d not in LOG_MAY_IMPORT)
        for module, deps in imports().items()
        if module.startswith("collector.log")
    }
    assert {m: d for m, d in wrong.items() if d} == {}


def test_the_readme_repository_table_matches_the_tree():
    """Every package under collector/ has its row in the README's repository table, naming each of its
    modules (a sub-package by its folder); top-level modules are named in the ``collector/`` row;
    tests/helpers.py is named."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Repository"):]
    table = table.split("\n## ", 1)[0]  # up to the next section, or the end (it may be the last)
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| (.*) \|$", table, re.M)}
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert [p for p in packages if f"collector/{p}/" not in rows or f"`{p}/`" not in rows["collector/"]] == []
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name in ("__init__.py", "__main__.py"):
            continue
        if len(rel.parts) == 1:
            named, row = f"`{rel.name}`", rows["collector/"]
        else:
            named = f"`{rel.parts[1]}`" if len(rel.parts) == 2 else f"`{rel.parts[1]}/`"
            row = rows[f"collector/{rel.parts[0]}/"]
        if named not in row:
            missing.append(f"collector/{rel}")
    assert "`helpers.py`" in rows["tests/"]
    assert missing == []
    collector_rows = " ".join(text for path, text in rows.items() if path.startswith("collector/"))
    named = set(re.findall(r"`([a-z_]+)\.py`", collector_rows))
    existing = {p.stem for p in PACKAGE.rglob("*.py")}
    assert named - existing == set(), "the table names modules that do not exist"
