"""Your own runs, first class: a Flax run trained by a plain optax loop, with its own per-task
CSV, goes through import (tasks, scores, the activation detected from the network's outputs),
analyze, figures, report and the task-end statistics with no glue."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast import stats
from ntkplast.errors import NtkplastError
from ntkplast.runs import checkpoints, jax_import, task_scores
from ntkplast.table import Table

flax = pytest.importorskip("flax")
optax = pytest.importorskip("optax")
nn = flax.linen

TASKS, STEPS, DIM = 6, 30, 6


class TanhMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(12)(x))
        x = jnp.tanh(nn.Dense(12)(x))
        return nn.Dense(3)(x)


def _train_own_run(folder, seed=0):
    """A researcher's loop: random-label tasks, SGD, a msgpack per task end, their own CSV."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((48, DIM)).astype(np.float32)
    module = TanhMLP()
    params = module.init(jax.random.PRNGKey(seed), x[:1])["params"]
    opt = optax.sgd(0.5)
    state = opt.init(params)

    def loss_fn(p, y):
        logits = module.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    @jax.jit
    def step(p, s, y):
        (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(p, y)
        u, s = opt.update(g, s)
        return optax.apply_updates(p, u), s, loss, (logits.argmax(-1) == y).mean()

    (folder / "ckpt_0.msgpack").write_bytes(flax.serialization.to_bytes(params))
    rows = []
    for t in range(TASKS):
        y = rng.integers(0, 3, len(x))
        for _ in range(STEPS):
            params, state, loss, acc = step(params, state, y)
        end = (t + 1) * STEPS
        (folder / f"ckpt_{end}.msgpack").write_bytes(flax.serialization.to_bytes(params))
        rows.append({"step": end, "task": t, "acc": float(acc), "loss": float(loss),
                     "note": "ok"})
    with open(folder.parent / f"scores{seed}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    outputs = module.apply({"params": params}, x)
    np.savez(folder / "probe.npz", x=x, outputs=np.asarray(outputs), step=np.int64(TASKS * STEPS))
    return rows


def test_flax_tanh_run_through_the_whole_chain(tmp_path):
    runs = []
    for seed in (0, 1):
        rows = _train_own_run(tmp_path / f"src{seed}", seed)
        out = tmp_path / "own" / f"seed{seed}"
        ok = run_cli("import", str(tmp_path / f"src{seed}"), str(out), "--framework", "flax",
                     "--tasks", str(tmp_path / f"scores{seed}.csv"), "--plasticity-measure",
                     "acc", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        assert "tanh from detected" in ok.stdout and "6 task ends" in ok.stdout
        manifest = checkpoints.read_manifest(out)
        assert manifest["model"]["activation"] == "tanh"
        records = manifest["tasks"]
        assert [r["task"] for r in records] == list(range(TASKS))
        assert [r["acc"] for r in records] == [r["acc"] for r in rows]
        assert [r["plasticity_score"] for r in records] == [r["acc"] for r in rows]
        assert manifest["task_scores"]["skipped_columns"] == ["note"]
        kinds = [(c["step"], c["task"], c["kind"]) for c in manifest["checkpoints"]]
        assert kinds[:2] == [(0, 0, "init"), (STEPS, 0, "task_end")]  # init ≠ end of task 0
        ok = run_cli("analyze", str(out), "--probe", str(tmp_path / f"src{seed}" / "probe.npz"),
                     "--metrics", "ntk,isometry,dormancy,plasticity", "--no-progress",
                     cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        runs.append(Table.read_csv(out / "analysis" / "metrics.csv"))
        ok = run_cli("figures", str(out), cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr

    score = runs[0].columns
    ends = score["checkpoint"][(score["metric"] == "plasticity_score")]
    assert len(ends) == TASKS  # every task end marked, the initial checkpoint not
    result = stats.spearman(runs, "ntk_trace", "plasticity_score", at="task_end")
    assert result.n_runs == 2 and np.isfinite(result.rho)
    ok = run_cli("report", str(tmp_path / "own"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    page = (tmp_path / "own" / "report.html").read_text()
    assert "<h2>own, seed0</h2>" in page and "<h2>seed0" not in page  # seeds are not methods
    assert "predictor" in page


def test_import_never_assumes_the_activation(tmp_path):
    _train_own_run(tmp_path / "src")
    (tmp_path / "src" / "probe.npz").rename(tmp_path / "probe.npz")
    assert_one_line_error(run_cli("import", "src", "run", "--framework", "flax", cwd=tmp_path),
                          "do not record the activation")
    assert not (tmp_path / "run").exists()
    # a probe with the network's outputs: tanh is detected
    ok = run_cli("import", "src", "run", "--framework", "flax", "--probe", "probe.npz",
                 cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert checkpoints.open_run(tmp_path / "run").spec.activation == "tanh"
    # a named activation that the outputs contradict is refused
    assert_one_line_error(run_cli("import", "src", "run2", "--framework", "flax", "--probe",
                                  "probe.npz", "--activation", "relu", cwd=tmp_path),
                          "does not reproduce")
    # outputs that no activation reproduces: refused, never relu
    ref = np.load(tmp_path / "probe.npz")
    np.savez(tmp_path / "bad.npz", x=ref["x"], outputs=ref["outputs"] + 1.0, step=ref["step"])
    assert_one_line_error(run_cli("import", "src", "run3", "--framework", "flax", "--probe",
                                  "bad.npz", cwd=tmp_path), "no activation")
    assert not (tmp_path / "run2").exists() and not (tmp_path / "run3").exists()


def test_task_table_checks_and_attach_after_the_fact(tmp_path):
    rows = _train_own_run(tmp_path / "src")

    jax_import.import_jax_folder(tmp_path / "src", tmp_path / "run", activation="tanh",
                                 method="mine", seed=3)
    assert checkpoints.read_manifest(tmp_path / "run")["group"] == {"method": "mine", "seed": 3}
    with pytest.raises(NtkplastError, match="no column \\['task'\\]"):
        task_scores.read_task_scores({"step": [1], "acc": [0.5]})
    with pytest.raises(NtkplastError, match="tasks must increase"):
        task_scores.read_task_scores({"step": [1, 2], "task": [1, 0], "acc": [0.5, 0.6]})
    with pytest.raises(NtkplastError, match="listed twice"):
        task_scores.read_task_scores({"step": [1, 1], "task": [0, 1], "acc": [0.5, 0.6]})
    with pytest.raises(NtkplastError, match="not an integer"):
        task_scores.read_task_scores({"step": [1.5], "task": [0], "acc": [0.5]})
    with pytest.raises(NtkplastError, match=r"step\(s\) \[7\] have no checkpoint"):
        task_scores.attach_task_scores(tmp_path / "run", {"step": [7], "task": [0], "a": [1]})
    with pytest.raises(NtkplastError, match="not a score column"):
        task_scores.attach_task_scores(tmp_path / "run", tmp_path / "scores0.csv",
                                       plasticity_measure="note")
    # a loss as the measure: plasticity_score is its negative, so higher is still better
    ok = run_cli("tasks", "run", "scores0.csv", "--plasticity-measure", "loss",
                 "--lower-is-better", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    manifest = checkpoints.read_manifest(tmp_path / "run")
    assert [r["plasticity_score"] for r in manifest["tasks"]] == [-r["loss"] for r in rows]
    assert manifest["task_scores"]["higher_is_better"] is False
    # relabelling replaces the earlier labels (a half table: the rest is back to imported)
    task_scores.attach_task_scores(tmp_path / "run", {"step": [STEPS], "task": [0],
                                                      "acc": [float("nan")]})
    manifest = checkpoints.read_manifest(tmp_path / "run")
    assert [c["kind"] for c in manifest["checkpoints"]][:3] == ["init", "task_end", "imported"]
    assert manifest["tasks"] == [{"task": 0, "end_step": STEPS, "acc": None,
                                  "plasticity_measure": "acc", "plasticity_score": None}]
    assert_one_line_error(run_cli("tasks", "run", "missing.csv", cwd=tmp_path), "missing.csv")
