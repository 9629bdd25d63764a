"""The package's shape: imports flow one way and never in a cycle, only the CLI imports click or rich, the fast
path's private torch APIs stay in grutext/fast, and `grutext --help` imports nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "grutext"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def grutext_imports(path: Path) -> set[str]:
    """Every grutext module `path` imports, at module level or inside a function (a lazy import closes a cycle
    as surely as an eager one)."""
    found: set[str] = set()
    modules = {module_name(p) for p in ROOT.rglob("*.py")}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("grutext"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grutext"):
            for alias in node.names:  # `from grutext import fast` imports the module grutext.fast
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    found.discard(module_name(path))
    return {name for name in found if name != "grutext"}  # the package's __init__ holds only the version


def test_no_import_cycles() -> None:
    graph = {module_name(p): grutext_imports(p) for p in ROOT.rglob("*.py")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself fails on a planted cycle (a -> b -> a), so a pass means something."""
    package = tmp_path / "grutext"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from grutext import b\n")
    (package / "b.py").write_text("import grutext.a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycles()


def test_only_the_cli_imports_click_or_rich_and_private_apis_stay_in_fast() -> None:
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.parent.name != "cli":
            for module in ("grutext.cli", "click", "rich"):
                assert f"import {module}" not in text and f"from {module} " not in text, f"{path} imports {module}"
        if path.parent.name != "fast":
            for private in ("torch._fused_adamw_", "torch._foreach", "._nnz()", "._indices()", "torch.jit."):
                assert private not in text, f"{path} uses {private}, which belongs in grutext/fast"


def test_help_imports_nothing_heavy() -> None:
    code = "import sys\nfrom grutext.cli import cli\ntry:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
    code += (
        "print(sorted(m for m in ('torch', 'datasets', 'matplotlib', 'onnxruntime', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
