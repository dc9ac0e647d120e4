"""Imports go one way: the contracts under ``[tool.importlinter]`` in pyproject.toml hold, and no
module imports itself through others.

import-linter builds the graph of every import in the package (those inside functions too) and
checks each contract; a broken one fails this test with the import chain that breaks it. The
layers rule out cycles between layers; the cycle check covers modules of the same package too.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LINT = """
import sys
from importlinter.cli import lint_imports
sys.exit(lint_imports(config_filename="pyproject.toml", no_cache=True, no_logo=True))
"""


def test_every_import_contract_is_kept():
    out = subprocess.run([sys.executable, "-c", LINT], cwd=REPO, capture_output=True, text=True)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert "0 broken" in report


def test_no_module_imports_itself_through_others():
    import grimp  # import-linter's import graph

    graph = grimp.build_graph("cnnstudio", cache_dir=None)
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert _cycles(imports) == []


def _cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another, directly or not (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports.get(child, ())))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found
