"""The experiment scripts in analyses/ run end to end at a tiny size (CI's smoke test)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(ROOT / "analyses" / script), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_plasticity_sweep_quick_at_tiny_size(tmp_path):
    out = _run("plasticity_sweep.py", "--quick", "--tasks", "4", "--steps", "5", "--seeds", "2",
               "--methods", "adam,adamo,redo", "--probe-size", "8", "--out", "sweep",
               cwd=tmp_path)
    assert "last-quarter means" in out and "predictors of the next task" in out
    for name in ("plasticity", "theory", "kernel_regime", "predictors"):
        assert (tmp_path / "sweep" / "figures" / f"{name}_permuted.png").exists()
    rows = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # header + one row per method


@pytest.mark.parametrize("script, args, produced", [
    ("custom_stream_regression.py", ("--tasks", "3", "--steps", "20", "--out", "reg"),
     "reg/regression.png"),
])
def test_example_scripts(tmp_path, script, args, produced):
    _run(script, *args, cwd=tmp_path)
    assert (tmp_path / produced).exists()
