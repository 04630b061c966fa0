"""The package's layering, read from the source (function-local imports included).

Four floors, each importing only its own floor and the ones below: ``util/`` (run machinery), the
top-level teaching core, ``tools/`` (what you do with a trained model), ``app/`` (the command line
and the notebooks' helpers). No import cycle, no module but the CLI and the notebook-facing API
importing ``train``, and function-local imports only where a comment says why."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mae_utils"
MAY_IMPORT_TRAIN = {"__init__", "app.cli", "app.tutorial"}  # cli loads commands by name; tutorial is notebook glue
ENTRY_POINTS = {"__init__", "__main__"}  # the package's front doors name what users import
FLOORS = {"util": 0, "tools": 2, "app": 3}  # every other module is the core, floor 1
TOP_LEVEL_LIMIT = 14  # the teaching core stays short enough to list at a glance


def _name(path: Path) -> str:
    """'model', 'util.cli', 'util.__init__': a module's name inside the package."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The package modules that a relative ``from`` import names, as :func:`_name` spells them."""
    package = module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    if node.module:
        return [".".join(base + node.module.split("."))]
    return [".".join(base + [alias.name]) for alias in node.names]


def _absolute(node: ast.ImportFrom) -> list[str]:
    """``from mae_utils.x import y`` as package module names ('x' or 'x.y' when y is a module)."""
    parts = node.module.split(".")[1:]
    if parts:
        return [".".join(parts)]
    return [alias.name for alias in node.names]


def _floor(module: str) -> int:
    return FLOORS.get(module.split(".")[0], 1) if "." in module else 1


def _module_names(top: dict[str, set[str]]) -> dict[str, set[str]]:
    """Keep only names that are modules ('util' alone is the package ``util/__init__``)."""
    known = set(top)
    fix = lambda d: d if d in known else (d + ".__init__" if d + ".__init__" in known else d.rsplit(".", 1)[0])
    return {m: {fix(d) for d in deps} & known for m, deps in top.items()}


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """(module -> package modules it imports, anywhere in the file; [(module, line, text) of local imports])."""
    top: dict[str, set[str]] = {}
    local: list[tuple[str, int, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name, lines = _name(path), path.read_text().splitlines()
        top[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if node.col_offset > 0:
                local.append((name, node.lineno, lines[node.lineno - 1]))
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                top[name].update(_resolve(name, node))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mae_utils"):
                top[name].update(_absolute(node))
    return top, local


def test_every_floor_imports_only_its_own_and_lower_floors():
    top, _ = _imports()
    upward = [
        f"{m} (floor {_floor(m)}) imports {d} (floor {_floor(d)})"
        for m, deps in _module_names(top).items()
        for d in sorted(deps)
        if _floor(d) > _floor(m) and m not in ENTRY_POINTS
    ]
    assert not upward, "an import reaches up a floor:\n" + "\n".join(upward)


def test_util_is_the_ground_floor():
    """util/ imports nothing outside util/: a run folder or a checkpoint file knows no model."""
    top, _ = _imports()
    leaks = [f"{m} -> {d}" for m, deps in _module_names(top).items() if m.startswith("util.")
             for d in sorted(deps) if not d.startswith("util.")]
    assert not leaks, "util/ reaches into the package:\n" + "\n".join(leaks)


def test_no_import_cycle():
    top, _ = _imports()
    top = _module_names(top)
    state: dict[str, str] = {}

    def visit(module: str, chain: list[str]) -> None:
        state[module] = "open"
        for dep in top.get(module, ()):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(chain + [dep])
            if dep not in state:
                visit(dep, chain + [dep])
        state[module] = "done"

    for module in top:
        if module not in state:
            visit(module, [module])


def test_only_the_cli_and_notebook_api_import_train():
    top, local = _imports()
    importers = {m for m, deps in top.items() if "train" in deps}
    importers |= {m for m, _, text in local if "train import" in text or ".train " in text}
    assert importers <= MAY_IMPORT_TRAIN, f"set-up helpers live in runtime.py, not train.py: {importers}"


def test_local_imports_say_why():
    _, local = _imports()
    silent = [f"{m}.py:{n}: {text.strip()}" for m, n, text in local if "# local:" not in text]
    assert not silent, "imports belong at the top unless a comment ('# local: ...') says why:\n" + "\n".join(silent)


def test_the_teaching_core_fits_on_one_screen():
    """The top level holds the algorithm; run machinery lives in util/, model-using commands in tools/."""
    top_level = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ENTRY_POINTS)
    assert len(top_level) <= TOP_LEVEL_LIMIT, f"{len(top_level)} top-level modules: {top_level}"


FUNCTION_LIMIT = 60  # lines, decorators and docstring included: a function a reader can hold
NOT_YET: set[str] = set()  # functions allowed over the limit for now: none


def _long_functions(package: Path = PACKAGE) -> list[str]:
    """'module.function (N lines)' for every function or method in the package over the limit."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - first + 1
                module = ".".join(path.relative_to(package).with_suffix("").parts)
                name = f"{module}.{node.name}"
                if lines > FUNCTION_LIMIT and name not in NOT_YET:
                    found.append(f"{name} ({lines} lines)")
    return found


def test_no_function_over_sixty_lines(tmp_path):
    assert not _long_functions(), "split these by phase or feature:\n" + "\n".join(_long_functions())
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LIMIT))
    (tmp_path / "planted.py").write_text(f"def planted():\n{body}\n")
    assert _long_functions(tmp_path) == [f"planted.planted ({FUNCTION_LIMIT + 1} lines)"]


LINE_LIMIT = 100  # characters: a line a reader takes in without scrolling, and a diff shows whole


def _style_breaches(package: Path = PACKAGE) -> list[str]:
    """'file:line what' for every ``# fmt: skip`` and every line over the limit in the package."""
    found = []
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package.parent).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "fmt: skip" in line:
                found.append(f"{name}:{number} fmt: skip (simplify the code instead)")
            if len(line) > LINE_LIMIT:
                found.append(f"{name}:{number} {len(line)} characters")
    return found


def test_source_style(tmp_path):
    """No '# fmt: skip' packing code under the function limit, no line over 100 characters."""
    breaches = _style_breaches()
    assert not breaches, f"{len(breaches)} style breach(es):\n" + "\n".join(breaches)
    planted = tmp_path / "mae_utils"
    planted.mkdir()
    (planted / "packed.py").write_text("x = 1  # fmt: skip\ny = '" + "a" * LINE_LIMIT + "'\n")
    assert _style_breaches(planted) == [
        "mae_utils/packed.py:1 fmt: skip (simplify the code instead)",
        f"mae_utils/packed.py:2 {LINE_LIMIT + 6} characters",  # y = '...': 6 more than the a's
    ]


def test_public_functions_in_tools_take_at_most_eight_parameters():
    """A command's library call takes a settings object, not a wall of keywords."""
    wide = []
    for path in sorted((PACKAGE / "tools").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [p for p in (a.vararg, a.kwarg) if p]
            count = len([p for p in params if p.arg not in ("self", "cls")])
            if count > 8:
                wide.append(f"tools/{path.name}:{node.lineno} {node.name} takes {count}")
    assert not wide, "public functions over 8 parameters:\n" + "\n".join(wide)
