"""The package layout: stages as sub-packages, no import cycle, old import paths still working."""

import ast
import importlib
import pathlib
import warnings

import pytest

import ntkplast

ROOT = pathlib.Path(ntkplast.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """ntkplast modules a file imports, at module level, inside a function (a deferred import
    that closes a loop is still a cycle) or under ``if TYPE_CHECKING:`` (a type-only import
    that closes a loop is a cycle for type checkers and for a reader, and one edit away from a
    run-time one)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ntkplast"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ntkplast"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imp in _imports(path):
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp and imp != name and not name.startswith(imp + "."):  # own package: no-op
                deps.add(imp)
                # importing a.b.c runs a/__init__ and a/b/__init__ first
                parent = imp.rpartition(".")[0]
                while parent and parent != "ntkplast":
                    if parent != name and not name.startswith(parent + "."):
                        deps.add(parent)
                    parent = parent.rpartition(".")[0]
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, …, a]``, or ``None`` when it has none (depth-first)."""
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def _package(module: str) -> str:
    """The stage a module belongs to: ``ntkplast.runs.interop`` → ``ntkplast.runs``; a top-level
    module (``ntkplast.models``) is its own."""
    return ".".join(module.split(".")[:2])


def _package_graph() -> dict[str, set[str]]:
    """The import graph between stages (sub-packages and top-level modules)."""
    graph: dict[str, set[str]] = {}
    for name, deps in _graph().items():
        graph.setdefault(_package(name), set()).update(
            _package(d) for d in deps if _package(d) != _package(name))
    return graph


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle)


def test_no_import_cycle_between_packages():
    """Stages import downwards only: no two sub-packages (or top-level modules) import each
    other, even through modules that do not import each other directly."""
    cycle = _cycle(_package_graph())
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_import_graph_counts_type_only_and_deferred_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nimport typing\n\n"
                   "if TYPE_CHECKING:\n    from ntkplast.data.streams import StreamSpec\n"
                   "if typing.TYPE_CHECKING:\n    import ntkplast.runs.interop\n\n"
                   "def f():\n    from ntkplast import models\n")
    assert _imports(src) == {"ntkplast.data.streams", "ntkplast.data.streams.StreamSpec",
                             "ntkplast.runs.interop", "ntkplast", "ntkplast.models"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_stay_small():
    sizes = {_module_name(p): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > 450} == {}


def test_base_sits_below_every_module():
    """``ntkplast.base`` (the shared types and protocols) imports no ntkplast module but
    ``errors``; ``ntkplast.io`` itself imports nothing (its modules are imported by name)."""
    graph = _graph()
    assert graph["ntkplast.base"] <= {"ntkplast.errors"}
    assert graph["ntkplast.io"] == set()


def test_base_types_are_re_exported_from_their_old_homes():
    from ntkplast import base, hooks, models
    from ntkplast.adapters import FunctionModel
    from ntkplast.data import custom

    assert models.Params is base.Params and models.network.Params is base.Params
    assert hooks.Hooks is base.Hooks and custom.Stream is base.Stream
    model = models.build(models.ArchSpec(widths=(4,), num_outputs=2))
    assert isinstance(model, base.ModelWithIntermediates)
    assert isinstance(FunctionModel(lambda p, x: x), base.ModelWithIntermediates)
    assert not isinstance(object(), base.ApplyModel)


def test_tests_mirror_the_packages():
    """``tests/<name>/`` holds the tests of ``ntkplast/<name>`` (a package or module);
    ``tests/system/`` the cross-cutting ones, ``tests/stress/`` their shared harness."""
    tests = pathlib.Path(__file__).resolve().parents[1]
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    stages = {p.stem for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert folders - stages - {"system", "stress"} == set()


def test_figures_do_not_import_training():
    graph = _graph()
    seen, todo = set(), ["ntkplast.figures"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    assert not {m for m in seen if m.startswith(("ntkplast.training", "ntkplast.experiments"))}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _names_used(path: pathlib.Path, modules: set[str]) -> set[str]:
    """Dotted ntkplast names a file imports (``from a.b import c`` → ``a.b.c``) or reads off an
    imported module (``from ntkplast import ntk``; ``ntk._tiles.X`` → ``ntkplast.ntk._tiles.X``:
    modules followed as far as they go, then one attribute)."""
    tree = ast.parse(path.read_text())
    bound: dict[str, str] = {}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ntkplast"):
            for a in node.names:
                found.add(f"{node.module}.{a.name}")
                bound[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("ntkplast"):
                    found.add(a.name)
                    bound[a.asname or "ntkplast"] = a.name if a.asname else "ntkplast"
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in bound and chain:
            name = bound[node.id]
            for attr in reversed(chain):
                if name not in modules:
                    break
                name = f"{name}.{attr}"
            found.add(name)
    return found


def _private_imports() -> set[tuple[str, str]]:
    """(importer, name) for every private name used outside the namespace that defines it.

    A ``_module`` belongs to its package, a ``_name`` defined in a module to that module (in a
    package's ``__init__``, to the package). So ``ntkplast.stats._inputs`` may be imported
    anywhere in ``ntkplast.stats``, ``ntkplast._jacobians`` anywhere in ntkplast, but
    ``ntkplast.isometry._weight_spectra`` nowhere else, not even from a sibling module.
    """
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    out = set()
    for importer, path in paths.items():
        for name in _names_used(path, set(paths)):
            parts = name.split(".")
            first = next((i for i, part in enumerate(parts) if _private(part)), None)
            if first is None:
                continue
            owner = ".".join(parts[:first])
            if importer != owner and not importer.startswith(owner + "."):
                out.add((importer, ".".join(parts[:first + 1])))
    return out


def test_no_private_imports_across_modules():
    """A module uses another module's or package's ``_private`` names only through their public
    faces (same-package private modules stay allowed)."""
    assert _private_imports() == set()


def test_private_import_check_sees_each_form(tmp_path):
    modules = {"ntkplast", "ntkplast.isometry", "ntkplast.ntk", "ntkplast.ntk._tiles"}
    src = tmp_path / "m.py"
    src.write_text("import ntkplast.isometry\nfrom ntkplast import ntk\n"
                   "from ntkplast.isometry import _weight_spectra as w\n"
                   "ntk._tiles.ROWS = 1\nntkplast.isometry._layer_spectra()\nntk.x._asdict()\n")
    assert _names_used(src, modules) == {
        "ntkplast.isometry", "ntkplast.ntk", "ntkplast.isometry._weight_spectra",
        "ntkplast.ntk._tiles.ROWS", "ntkplast.isometry._layer_spectra", "ntkplast.ntk.x",
        "ntkplast.ntk._tiles"}


FLAT = {"train": "ntkplast.training", "streams": "ntkplast.data.streams",
        "custom_streams": "ntkplast.data.custom", "checkpoints": "ntkplast.runs.checkpoints",
        "hypotheses": "ntkplast.stats"}
MOVED = {"config": "ntkplast.training.config", "probes": "ntkplast.analysis.probes",
         "interop": "ntkplast.runs.interop", "experiment": "ntkplast.experiments.grid",
         "sweep": "ntkplast.experiments.sweep", "executors": "ntkplast.experiments.executors",
         "demo": "ntkplast.experiments.demo", "reactivation": "ntkplast.experiments.reactivation",
         "stax_bridge": "ntkplast.ntk._stax", "files": "ntkplast.io.files",
         "safe_read": "ntkplast.io.safe_read", "lock": "ntkplast.io.lock"}
OLD = {**FLAT, **MOVED}  # the flat layout's second names warn like the moved modules


def _forget(old: str) -> None:
    """Undo an earlier import of ``ntkplast.<old>``, which is cached and warns only once."""
    import sys

    sys.modules.pop(f"ntkplast.{old}", None)
    if old in vars(ntkplast):
        delattr(ntkplast, old)


def test_old_names_are_the_package_table():
    assert OLD == ntkplast._MOVED


@pytest.mark.parametrize("form", ["import ntkplast.{old} as module",
                                  "from ntkplast import {old} as module"])
@pytest.mark.parametrize("old,new", sorted(OLD.items()))
def test_old_names_import_with_a_deprecation_warning(old, new, form):
    """Both import forms give the new module and warn, naming it, at the importing line."""
    module = importlib.import_module(new)  # first imports' own warnings (matplotlib …) before
    _forget(old)
    namespace = {}
    code = compile(form.format(old=old), __file__, "exec")
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")) as record:
        exec(code, namespace)
    assert namespace["module"] is module
    ours = [w for w in record if str(w.message).startswith(f"ntkplast.{old} moved to {new};")]
    assert [w.filename for w in ours] == [__file__]


@pytest.mark.parametrize("old", sorted(FLAT))
def test_an_old_name_warns_once_per_process(old):
    _forget(old)
    with pytest.warns(DeprecationWarning):
        first = getattr(ntkplast, old)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert getattr(ntkplast, old) is first


def _old_name_uses(path: pathlib.Path) -> list[str]:
    """``file:line name`` for each import or attribute of ``ntkplast.<old name>`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module == "ntkplast":
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ntkplast."):
            names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("ntkplast.")]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "ntkplast"):
            names = [node.attr]
        found += [f"{path}:{node.lineno} {n}" for n in names if n in OLD]
    return found


def test_the_repository_uses_one_name_per_module():
    """The package, tests, analyses and benchmarks import each module by its one name; old
    names appear only here and in their stubs."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    paths = [p for folder in ("ntkplast", "tests", "analyses", "benchmarks")
             for p in sorted((repo / folder).rglob("*.py"))
             if "_old_names" not in p.parts and p.resolve() != pathlib.Path(__file__).resolve()]
    assert paths
    assert [use for p in paths for use in _old_name_uses(p)] == []


def test_readme_names_resolve():
    from ntkplast import models, ntk, training
    from ntkplast.data import custom

    assert training.RunConfig and training.TrainConfig and training.train_run
    assert training.train_seeds and training.Hooks
    assert custom.ArrayStream and models.ArchSpec and models.build
    assert ntk.empirical_ntk


def test_the_repository_is_ruff_clean():
    """``ruff check`` with the rules of pyproject.toml finds nothing (ruff is pinned in
    docs/requirements.txt, part of the full environment)."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff") or pytest.skip("ruff is not installed")
    repo = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([ruff, "check", "--no-cache", "."], cwd=repo, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
