"""The house rules: no import circle between pni's modules (imports inside functions count,
and so does the package ``__init__`` Python runs first: importing ``pni.a.b`` imports ``pni.a``);
the top level is the leaves and one folder per job, listed here (a new file goes into a folder
or changes this list)."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "pni").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The pni modules ``name`` imports anywhere in its file (a package import counts too)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    found = {m for m in found if m in modules and m != name}
    # importing pni.a.b runs pni.a's __init__ first (the root package excepted: it only re-exports,
    # and the module's own packages are already being imported)
    own = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
    parents = {".".join(m.split(".")[:i]) for m in found for i in range(2, len(m.split(".")))}
    return found | {p for p in parents if p in modules and p not in own}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_between_pni_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package's __init__ re-exporting its own submodules is not a circle of jobs
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    assert _cycles(graph) == []


def test_the_circle_detector_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_every_pni_error_is_a_pni_error():
    import importlib
    import inspect

    import pni

    names = [name for name in _modules() if name != "pni.__main__"]
    errors = {}
    for name in names:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                errors[f"{name}.{attr}"] = value
    assert len(errors) >= 15  # the detector sees them: DataError, CheckpointError, NoiseError, ...
    # a stop by SIGTERM/SIGINT is an exit, not an error
    outside = [n for n, cls in errors.items() if not issubclass(cls, pni.PNIError) and n != "pni.training.run_folder.TrainingInterrupted"]
    assert outside == []
    assert issubclass(pni.NoiseError, pni.PNIError) and issubclass(pni.DataError, ValueError)


LEAVES = {"__init__.py", "__main__.py", "allocator.py", "checkpoint.py", "config.py", "distributed.py",
          "errors.py", "files.py", "folder_lock.py", "noise.py", "progress.py", "threads.py", "provenance.py", "resumable.py",
          "runs.py", "seeding.py", "settings.py"}
JOB_FOLDERS = {"attacks", "auditing", "benchmark", "certification", "cli", "data", "evaluation", "models", "presets", "reports",
               "reproduce", "training", "_sample"}


def test_the_top_level_is_leaves_and_job_folders():
    top = {p.name for p in (SRC / "pni").iterdir() if p.name != "__pycache__"}
    assert {p for p in top if p.endswith(".py")} == LEAVES
    assert {p for p in top if (SRC / "pni" / p).is_dir()} == JOB_FOLDERS


def test_the_leaves_import_only_leaves():
    """Every layer may use a leaf, so a leaf uses no job folder (that arrow would run back up)."""
    modules = _modules()
    leaves = {"pni." + name[:-3] for name in LEAVES if name not in ("__init__.py", "__main__.py")}
    upward = {leaf: sorted(m for m in _imports(leaf, modules[leaf], modules) if m not in leaves)
              for leaf in sorted(leaves)}
    assert {leaf: found for leaf, found in upward.items() if found} == {}


def test_package_inits_count_as_imports():
    modules = {"pni.a": Path("a/__init__.py"), "pni.a.b": Path("a/b.py"), "pni.c": Path("c.py")}
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.py"
        path.write_text("from .a import b\n")
        assert _imports("pni.c", path, modules) == {"pni.a", "pni.a.b"}


def test_the_cli_modules_import_nothing_private_from_each_other():
    """One module per subcommand, sharing only public names (``cli/args.py``'s helpers included)."""
    found = []
    for path in sorted((SRC / "pni" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found += [f"{path.name}: {alias.name}" for alias in node.names
                          if alias.name.startswith("_") and alias.name != "__version__"]
    assert found == []
