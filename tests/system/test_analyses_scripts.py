"""The experiment scripts in analyses/ run end to end at a tiny size (CI's smoke test), each
executed as a notebook (jupytext + a Jupyter kernel), so a cell that fails there fails here."""

import pytest
from notebooks import ROOT, TINY, run_notebook

pytestmark = pytest.mark.slow  # end to end: the full leg of CI runs them, the core leg does not


def _run(script, cwd):
    """Run ``analyses/<script>`` as a notebook at its tiny size (analyses/tiny_sizes.toml)."""
    return run_notebook(ROOT / "analyses" / script, *TINY[script.removesuffix(".py")], cwd=cwd)


def test_plasticity_sweep_quick_at_tiny_size(tmp_path):
    out = _run("plasticity_sweep.py", cwd=tmp_path)
    assert "last-quarter means" in out and "predictors of the next task" in out
    for name in ("plasticity", "theory", "kernel_regime", "predictors", "kernel_vs_plasticity"):
        assert (tmp_path / "sweep" / "figures" / f"{name}_permuted.png").exists()
    rows = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # header + one row per method


def test_custom_stream_regression_at_tiny_size(tmp_path):
    _run("custom_stream_regression.py", cwd=tmp_path)
    assert (tmp_path / "regression" / "regression.png").exists()


def test_paper_claims_at_tiny_size(tmp_path):
    out = _run("paper_claims.py", cwd=tmp_path)
    for claim in ("claim 3", "claim 1", "claim 2", "claim 'partial measures'", "claim 4"):
        assert claim in out
    assert "R = 2" in out and "8×8" in out
    for name in ("plasticity", "theory", "isometry_measures", "predictors_plasticity_score"):
        assert (tmp_path / "paper" / "figures" / f"{name}.png").exists()
    assert (tmp_path / "paper" / "claims.txt").read_text() in out


def test_architectures_at_tiny_size(tmp_path):
    out = _run("architectures.py", cwd=tmp_path)
    for arm in ("relu", "relu_adamo", "layernorm_l2", "groupsort_orthogonal"):
        assert f"[{arm}] trained" in out
        line = next(x for x in out.splitlines() if x.strip().startswith(arm + " "))
        assert "(R = 2)" in line and "first task" in line and "n/a" not in line.split(";")[0]
    assert (tmp_path / "arch" / "figures" / "plasticity.png").exists()
    assert (tmp_path / "arch" / "architectures.txt").read_text().strip() in out


def test_rival_explanations_at_tiny_size(tmp_path):
    out = _run("rival_explanations.py", cwd=tmp_path)
    for name in ("loss Hessian λ_max (sharpness)", "optimization readiness", "output churn",
                 "NTK condition number (log)"):
        assert name in out
    assert "fire − isometry" in out and "R = 2 seeds" in out
    assert (tmp_path / "rivals" / "report.html").exists()


def test_fashion_benchmarks_at_tiny_size(tmp_path):
    out = _run("fashion_benchmarks.py", cwd=tmp_path)
    answers = (tmp_path / "fashion" / "answers.txt").read_text()
    assert answers.strip() in out
    assert "isometry (frozen) − adam: paired difference" in answers and "R = 2" in answers
    before, after = answers.split("[drifting]")
    assert "fire − adam" in before and "fire − adam" not in after  # no task ends to act at
    chosen = (tmp_path / "fashion" / "selection.json").read_text()
    assert '"frozen_on": "permuted"' in chosen and '"permuted_100"' in chosen
    assert (tmp_path / "fashion" / "figures" / "answers.png").exists()


def test_rl_plasticity_at_tiny_size(tmp_path):
    pytest.importorskip("gymnax", reason="the RL extra (gymnax) is not installed")
    out = _run("rl_plasticity.py", cwd=tmp_path)
    assert "R = 2" in out and "isometry − ppo" in out and "adamo − ppo" in out
    assert (tmp_path / "rl" / "figures" / "rl_plasticity.png").exists()
    assert (tmp_path / "rl" / "answers.txt").read_text().strip() in out
