"""The shape of the pack's code (issue 16): short functions, a thin ComfyUI layer, explicit wiring.

* no function or method in the pack's Python (fk_core/, nodes/, testbeds/, bench/, scripts/, the root
  __init__.py) is over 60 lines: a longer one does several things and reads as one;
* nodes/ stays a thin adapter layer: at most 2,000 lines in all (host-agnostic logic belongs in fk_core/);
* nodes/ imports fk_core only through its public face (fk_core/__init__.py);
* no module of nodes/ or fk_core/ keeps a module-level mutable hook (a list or dict named *HOOK*): what a run
  reports to is passed in, not set on a module.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
MAX_NODES_LINES = 2000


def _sources(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def _pack_sources() -> list[Path]:
    return [*_sources("fk_core", "nodes", "testbeds", "bench", "scripts"), ROOT / "__init__.py"]


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` for every function or method of ``path`` over ``limit`` lines (decorators
    left out, docstring included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def _is_mutable(value: ast.expr) -> bool:
    if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    return isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) in (
        "list", "dict", "set", "defaultdict", "OrderedDict", "deque")


def module_hooks(path: Path) -> list[str]:
    """Module-level names containing HOOK bound to a mutable container."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) and node.value is not None else []
        for target in targets:
            name = getattr(target, "id", "")
            if "HOOK" in name.upper() and _is_mutable(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_the_checks_see_what_they_look_for(tmp_path, monkeypatch):
    """Each scan finds a planted case (and passes a clean one), so a green run means something."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def too_long():\n{body}\n\n\ndef fine():\n    return 1\n")
    assert long_functions(tmp_path / "long.py") == [f"long.py:1 too_long ({MAX_FUNCTION_LINES + 1} lines)"]
    (tmp_path / "hooks.py").write_text("LIVE_HOOKS = []\nHOOK_NAMES = ('a',)\n_hooks: dict = {}\nHOOKED = dict()\n")
    assert module_hooks(tmp_path / "hooks.py") == ["hooks.py:1 LIVE_HOOKS", "hooks.py:3 _hooks", "hooks.py:4 HOOKED"]


def test_no_function_is_over_60_lines():
    found = [entry for path in _pack_sources() for entry in long_functions(path)]
    assert not found, "split these functions:\n" + "\n".join(found)


def test_nodes_stay_a_thin_layer():
    lines = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in _sources("nodes")}
    assert sum(lines.values()) <= MAX_NODES_LINES, (
        f"nodes/ has {sum(lines.values())} lines (at most {MAX_NODES_LINES}): move host-agnostic logic into "
        f"fk_core; per file: {lines}")


def test_nodes_import_fk_core_only_through_its_public_face():
    deep = re.compile(r"^\s*(from\s+\.\.fk_core\.|from\s+fk_core\.|import\s+fk_core\.)", re.MULTILINE)
    found = [str(path.relative_to(ROOT)) for path in _sources("nodes") if deep.search(path.read_text("utf-8"))]
    assert not found, f"import these from ..fk_core (fk_core/__init__.py exports what hosts use): {found}"


def test_no_module_level_mutable_hook():
    found = [entry for path in _sources("nodes", "fk_core") for entry in module_hooks(path)]
    assert not found, f"pass the hook in instead of keeping it on the module: {found}"
