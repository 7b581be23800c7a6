"""The package layering of the README's "How the code is laid out": every module's imports (those that run, so
not ``if TYPE_CHECKING:`` blocks) point at its own package or at one listed above it, and no import cycle exists
between modules, except inside ``legacy/`` (the dataset-YAML reader and its ops check each other's names)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "neurotrain"
# From the ground floor up: a package may import its own modules and those of earlier entries.
LAYERS = ["neurotrain", "errors", "io", "config", "data", "model", "checkpoint", "training", "legacy", "sources",
          "notebook", "predict", "evaluation", "insilico", "run", "finetune", "cli", "__main__"]
CYCLES_ALLOWED_IN = {"legacy"}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the neurotrain modules it imports at run time (module-level or inside functions)."""
    edges = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                       for n in ast.walk(node)}
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [f"{target}.{a.name}" for a in node.names] + [target]
            else:
                continue
            for t in targets:
                if not t.startswith("neurotrain"):
                    continue
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != name:
                    found.add(t)
                    break
        edges[name] = found
    return edges


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "neurotrain"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    assert {_layer(m) for m in _modules()} <= set(LAYERS)


def test_no_import_points_up_the_layers():
    edges = _imports(_modules())
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{m} -> {t}" for m, ts in edges.items() for t in ts if rank[_layer(t)] > rank[_layer(m)]]
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_no_import_cycles_outside_legacy():
    cycles = _cycles(_imports(_modules()))
    bad = [c for c in cycles if {_layer(m) for m in c} - CYCLES_ALLOWED_IN]
    assert not bad, f"import cycles: {bad}"


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_test_modules_have_unique_basenames():
    """Test folders have no ``__init__.py``, so pytest imports each test file by its basename: two files with one
    name in different folders stop the whole collection ("import file mismatch") on a clean clone."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, list[str]] = {}
    for p in tests.rglob("test_*.py"):
        if "helpers" not in p.parts:
            seen.setdefault(p.name, []).append(str(p.relative_to(tests)))
    assert not {k: v for k, v in seen.items() if len(v) > 1}
