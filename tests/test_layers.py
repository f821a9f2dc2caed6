"""The package's layers: a module imports only from its own layer or below (lazy imports
inside functions included), no module is over ~400 lines, and only harness/env.py reads the
environment. What docs/architecture.md describes, checked."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "harness"

# Lowest first. A package (engine, kinds, metrics, report, track, train) is one unit.
LAYERS = [
    {"errors", "env", "paths", "yamlio", "options", "policy", "specs", "progress",
     "distributed", "transforms", "store", "gguf_base", "fingerprint", "shapes", "harness"},
    {"metrics", "stats", "adjust", "seeds", "degenerate", "prompts", "kernels", "_triton_kernels",
     "lmeval", "data", "tiny", "examples"},
    {"engine", "backend", "lmeval_backend", "models"},
    {"kinds", "registry"},
    {"report", "runner", "divergence"},
    {"compare", "score", "gate", "leaderboard", "show", "export", "gguf_export", "track",
     "train"},
    {"demo", "cli", "cli_parser", "cli_errors", "clidoc", "__main__"},
]
PACKAGES = {"engine", "kinds", "metrics", "report", "track", "train", "tasks"}
# examples.py is the demo's project-written data (word lists and row generators), not logic.
LONG_OK = {"examples.py"}
MAX_LINES = 440  # "about 400"


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "harness"


def layer(name: str) -> int:
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"{name} is in no layer: add it to tests/test_layers.py and "
                         f"docs/architecture.md")


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text())


def test_imports_go_to_the_same_layer_or_below():
    wrong = []
    for name, _, tree in modules():
        own = unit(name)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] == "harness":
                targets = [node.module] if node.module != "harness" else [
                    f"harness.{a.name}" if (ROOT / f"{a.name}.py").exists()
                    or (ROOT / a.name).is_dir() else "harness" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "harness"]
            for target in targets:
                other = unit(target)
                if other != own and layer(other) > layer(own):
                    wrong.append(f"{name} imports {target} (layer {layer(other)} > "
                                 f"{layer(own)})")
    assert wrong == []


def test_modules_stay_small():
    long = [f"{path.relative_to(ROOT)}: {n}" for _, path, _ in modules()
            if (n := len(path.read_text().splitlines())) > MAX_LINES
            and path.name not in LONG_OK]
    assert long == []


def test_only_env_reads_the_environment():
    readers = []
    for name, path, tree in modules():
        if name == "harness.env":
            continue
        for node in ast.walk(tree):
            # os.environ.get(...), os.environ[...], os.getenv(...)
            if isinstance(node, ast.Attribute) and node.attr in ("getenv",) or (
                    isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "environ" and isinstance(node.ctx, ast.Load)) or (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get" and isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr == "environ"):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []


def test_the_engine_keeps_no_module_state():
    """The engine and its kernels hold no module-level dict, list or set that a call reads or
    writes, and no function rebinds a module global: each call's state is passed in."""
    found = []
    for name, path, tree in modules():
        if not (name.startswith("harness.engine") or name in ("harness.kernels",
                                                             "harness.options")):
            continue
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] \
                    == ["__all__"]:
                continue  # the export list, read by `import *` only
            if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp,
                                  ast.SetComp)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        found += [f"{path.relative_to(ROOT)}:{n.lineno} global" for n in ast.walk(tree)
                  if isinstance(n, ast.Global)]
    assert found == []
