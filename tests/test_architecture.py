"""The layers of docs/architecture.md, enforced: lower layers never import upper ones, and an
import hidden inside a function says why in a comment."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("engine", ("engine",)),
    ("widgets", ("reports.widgets",)),
    ("dagster resources", ("resources",)),
    ("dagster assets", ("assets",)),
    ("dagster definitions", ("pipelines",)),
    ("apps", ("apps",)),
]
PRODUCT = ("engine", "resources", "assets", "pipelines", "reports", "apps")
MAX_FUNCTION_LINES = 50


def _layer(module: str) -> int | None:
    """The layer of a module of ours: the longest matching prefix decides."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return best[1] if best else None


def _modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(p for p in parts if p != "__init__")] = path
    return found


def _imports(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node))
    return found


def _inside_functions(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            ids |= {id(inner) for inner in ast.walk(node) if inner is not node}
    return ids


def test_no_layer_imports_a_layer_above_it():
    wrong = []
    for module, path in _modules().items():
        own = _layer(module)
        for imported, node in _imports(ast.parse(path.read_text())):
            target = _layer(imported)
            if own is not None and target is not None and target > own:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} ({LAYERS[own][0]}) "
                             f"imports {imported} ({LAYERS[target][0]})")
    assert wrong == []


def test_an_import_inside_a_function_says_why():
    unexplained = []
    for path in _modules().values():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        hidden = _inside_functions(tree)
        for _, node in _imports(tree):
            if id(node) not in hidden:
                continue
            if not _explained(lines, node):
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unexplained == []


def _explained(lines: list[str], node: ast.stmt) -> bool:
    """A comment on the import, or on the block of imports (and blank lines) it stands in."""
    if "#" in "".join(lines[node.lineno - 1:node.end_lineno]):
        return True
    index = node.lineno - 2
    while index >= 0:
        line = lines[index].strip()
        if line.startswith("#"):
            return True
        if line and not line.startswith(("from ", "import ", ")")) and not line.endswith(","):
            return False
        index -= 1
    return False


def test_no_function_is_longer_than_fifty_lines():
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length})")
    assert long == []


def _type_only(tree: ast.AST) -> set[int]:
    """Imports under `if TYPE_CHECKING:`: for type checkers, never run."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids |= {id(inner) for inner in ast.walk(node) if inner is not node}
    return ids


def _targets(imported: str, node: ast.stmt, modules: dict[str, Path]) -> list[str]:
    """The modules of ours an import loads: `from pkg import mod` names the module itself."""
    if isinstance(node, ast.ImportFrom):
        named = [f"{imported}.{alias.name}" for alias in node.names]
        found = [name for name in named if name in modules]
        if len(found) == len(named):
            return found
    return [imported] if imported in modules else []


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_only(tree)
        graph[module] = {target for imported, node in _imports(tree) if id(node) not in skipped
                         for target in _targets(imported, node, modules) if target != module}
    return graph


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from `start` back to itself, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for target in graph.get(module, ()):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_import_circle_between_product_files():
    graph = _import_graph()
    circles = {" -> ".join(c) for m in graph if (c := _cycle_from(m, graph))}
    assert sorted(circles) == []


def test_only_the_apps_import_the_definitions():
    outside = [f"{module} imports pipelines.definitions"
               for module, targets in _import_graph().items()
               if "pipelines.definitions" in targets and _layer(module) != len(LAYERS) - 1]
    assert outside == []


def test_the_engine_never_imports_dagster():
    found = []
    for module, path in _modules().items():
        if _layer(module) != 0:
            continue
        for imported, node in _imports(ast.parse(path.read_text())):
            if imported == "dagster" or imported.startswith(("dagster.", "dagster_")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {imported}")
    assert found == []


SETTINGS_MODULE = "engine.settings"
# Writes of the environment that stay where they are, each with why. A read is never listed:
# values come from engine.settings.load_settings().
ENVIRONMENT_WRITES = {
    ("pipelines/instance.py", "os.environ[DAGSTER_HOME_ENV] = str(home)"):
        "DagsterInstance.get() and the Dagster processes we start find the instance there",
    ("apps/demo.py", "os.environ['STRIPE_API_BASE'] = server.base_url"):
        "the demo's sandbox URL, for this process's settings and the workers it starts",
    ("apps/launch.py", "{**os.environ, LAUNCHER_ENV: 'web'}"):
        "the CLI the report page starts inherits everything, plus who launched it",
    ("apps/resident.py", "environment = dict(os.environ)"):
        "a command handed to the resident process runs in the caller's whole environment",
    ("apps/resident.py", "os.environ"):
        "the resident process's copy takes that environment in place of its own",
}
_ENVIRONMENT_NAMES = ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")


def _is_environment(node: ast.AST) -> bool:
    """`os.environ` / `os.getenv` / ..., a bare imported `environ`, or `from os import environ`."""
    if isinstance(node, ast.Attribute):
        return node.attr in _ENVIRONMENT_NAMES and isinstance(node.value, ast.Name) \
            and node.value.id in ("os", "posix")
    if isinstance(node, ast.Name):
        return node.id in _ENVIRONMENT_NAMES
    return isinstance(node, ast.ImportFrom) and node.module == "os" and \
        any(alias.name in _ENVIRONMENT_NAMES for alias in node.names)


def _enclosing(tree: ast.AST, target: ast.AST) -> ast.AST:
    """The innermost assignment or dict literal holding `target`: what the allow-list names."""
    holders = [node for node in ast.walk(tree) if isinstance(node, ast.Dict | ast.Assign)
               and any(inner is target for inner in ast.walk(node))]
    return max(holders, key=lambda node: (node.lineno, node.col_offset), default=target)


def test_only_the_settings_module_reads_the_environment():
    found, allowed = [], set(ENVIRONMENT_WRITES)
    for module, path in _modules().items():
        if module == SETTINGS_MODULE:
            continue
        relative = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text())
        for node in filter(_is_environment, ast.walk(tree)):
            use = ast.unparse(_enclosing(tree, node))
            if (relative, use) not in allowed:
                found.append(f"{relative}:{node.lineno} {use}")
    assert found == [], "read settings through engine.settings.load_settings()"
