"""The ``Examples:`` sections of the public API's docstrings run as doctests.

Only the modules listed in :data:`MODULES` are collected: they import nothing optional
(neural-tangents, flax, equinox, torch, ray), so the same examples run in the full, core and
newest environments. Each docstring with examples is one test; the examples print rounded
floats, booleans and shapes only, so their output does not depend on the jax or numpy version.
"""

import doctest
import importlib

import pytest

MODULES = (
    "ntkplast.spectra._spectrum",
    "ntkplast.spectra._distances",
    "ntkplast.ranks",
    "ntkplast.isometry.summaries",
    "ntkplast.dormancy",
    "ntkplast.churn",
    "ntkplast.forgetting",
    "ntkplast.ntk.empirical",
    "ntkplast.ntk.operators",
    "ntkplast.stats.correlation",
    "ntkplast.stats.contrasts",
    "ntkplast.stats.intervals",
    "ntkplast.stats.sensitivity",
    "ntkplast.stats.trend",
    "ntkplast.regularizers.penalties",
    "ntkplast.regularizers._baseline_penalties",
    "ntkplast.regularizers.decoupled",
    "ntkplast.regularizers.boundary",
    "ntkplast.regularizers.projection",
    "ntkplast.linalg",
    "ntkplast.table.tidy",
    "ntkplast.table.task_ends",
    "ntkplast.models.network",
    "ntkplast.models.layers",
    "ntkplast.curvature",
    "ntkplast.gradients",
)
MIN_DOCSTRINGS = 30
"""At least this many docstrings carry examples (each one or more ``>>>`` lines), over all of
:data:`MODULES`."""
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        found += [t for t in finder.find(module, name) if t.examples]
    return sorted(found, key=lambda t: t.name)


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {test.name}"


def test_every_module_has_examples():
    per_module = {name: 0 for name in MODULES}
    for t in DOCTESTS:
        module = max((m for m in MODULES if t.name == m or t.name.startswith(m + ".")), key=len)
        per_module[module] += 1
    assert not [m for m, n in per_module.items() if n == 0], per_module
    assert len(DOCTESTS) >= MIN_DOCSTRINGS, per_module
    assert sum(len(t.examples) for t in DOCTESTS) >= MIN_DOCSTRINGS
