"""Theory figures draw the raw spectra of an analysis (those of its kernels); reports embed them."""

import base64
import html
from html.parser import HTMLParser

import jax.numpy as jnp
import matplotlib.collections
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from ntkplast import analysis, figures, models, ntk, stats, training
from ntkplast.data import streams
from ntkplast.errors import NtkplastError
from ntkplast.experiments import report
from ntkplast.experiments.grid import run_grid
from ntkplast.figures import spectra as spectrum_figures
from ntkplast.io.lock import folder_lock
from ntkplast.runs import checkpoints
from ntkplast.table import Table

SETTINGS = analysis.Settings(probe_size=12, spectra_subsample=4)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, tiny_config):
    """A tiny run of 3 tasks checkpointed at the task ends only (init + 3), analysed into its
    own folder: the figures draw task ends and the report has a row per task."""
    d = tmp_path_factory.mktemp("run")
    cfg = tiny_config(seed=2, widths=(10, 10), num_tasks=3, steps_per_task=8,
                      checkpoint_every=0, eval_previous=False)
    training.train_run(cfg, d, progress=False)
    table = analysis.analyze(d, SETTINGS, progress=False)
    return d, table, checkpoints.load_arrays(d / "analysis" / "spectra.npz")


def _lines(ax):
    return {line.get_label().split(" (")[0]: line for line in ax.get_lines()}


def test_ntk_spectra_draw_the_kernels_eigenvalues(analysed):
    run_dir, table, arrays = analysed
    run = checkpoints.open_run(run_dir)
    x = jnp.asarray(checkpoints.load_arrays(run_dir / "analysis" / "probe.npz")["x"])
    fig = figures.ntk_spectra(arrays, table)
    total_ax = fig.axes[0]
    last = len(run) - 1  # the end of the last task, drawn by default
    line = _lines(total_ax)["task 2 end"]
    kernel = np.asarray(ntk.empirical_ntk(run.model, run.params(last), x), np.float64)
    want = np.sort(np.linalg.eigvalsh(kernel))[::-1]
    floor = len(want) * np.finfo(np.float32).eps * want[0]  # drawn: above the rounding floor
    np.testing.assert_allclose(line.get_ydata(), want[want > floor], rtol=1e-4,
                               atol=1e-6 * want[0])
    alpha = float(line.get_label().split("α = ")[1].rstrip(")"))
    row = table.select("ntk_decay_exponent", "all")
    assert alpha == pytest.approx(row.columns["value"][row.columns["checkpoint"] == last][0],
                                  abs=0.006)
    # one small panel per layer, whose parts add up to the total kernel's trace
    parts = [arrays[f"ntk_layer_eigenvalues/{li}/{last}"] for li in range(3)]
    assert sum(p.sum() for p in parts) == pytest.approx(arrays[f"ntk_eigenvalues/{last}"].sum(),
                                                        rel=1e-5)
    assert [ax.get_title() for ax in fig.axes[1:4]] == [f"Θ_{li} (layer {li})" for li in range(3)]
    assert "init" in _lines(total_ax)


def test_choose_checkpoints_defaults_explicit_and_refusals(analysed):
    _, table, arrays = analysed
    have = sorted(int(k.split("/")[-1]) for k in arrays if k.startswith("ntk_eigenvalues/"))
    assert spectrum_figures.choose_checkpoints(have, table) == have  # init + 3 task ends
    assert spectrum_figures.choose_checkpoints(have, table, every=2) == [0, 2, 3]
    assert spectrum_figures.choose_checkpoints(have, None, checkpoints=[3, 99]) == [3]
    with pytest.raises(NtkplastError, match="none of checkpoints"):
        spectrum_figures.choose_checkpoints(have, table, checkpoints=[99])
    with pytest.raises(NtkplastError, match="no Jacobian spectra"):
        figures.jacobian_spectra({}, table)


def test_jacobian_spectra_are_ecdfs_of_the_singular_values(analysed):
    _, table, arrays = analysed
    fig = figures.jacobian_spectra(arrays, table, checkpoints=[3])
    for ax, key in zip(fig.axes, ["jac_sv/0/3", "jac_sv/1/3", "jac_sv/2/3", "io_sv/3"]):
        sv = arrays[key].astype(np.float64)
        # zero: at or below n·ε₃₂·σ_max of its own input (row)
        floor = sv.shape[1] * np.finfo(np.float32).eps * sv.max(axis=1, keepdims=True)
        positive = np.sort(sv[sv > floor])
        (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("task")]
        x, y = line.get_xdata(), line.get_ydata()
        np.testing.assert_array_equal(x, positive)
        assert y[-1] == pytest.approx(1.0)
        zeros = 1 - len(positive) / sv.size
        assert y[0] == pytest.approx(zeros + (1 - zeros) / len(positive))
        assert ax.get_title().endswith(f"zeros {zeros:.0%} → {zeros:.0%}")


def test_layer_shares_stack_to_one(analysed):
    _, table, _ = analysed
    fig = figures.ntk_layer_shares(table)
    polys = [c for c in fig.axes[0].collections
             if isinstance(c, matplotlib.collections.PolyCollection)]
    assert len(polys) == 3
    top = polys[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0, abs=1e-6)


def test_run_figures_writes_every_figure(analysed, tmp_path):
    run_dir, _, _ = analysed
    paths = figures.run_figures(run_dir / "analysis", tmp_path)
    names = {p.name for p in paths}
    for stem in ("diagnostics", "rivals", "ntk_spectra", "jacobian_spectra", "ntk_layer_shares"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000


def test_figures_elsewhere_take_the_analysis_folders_lock_before_reading(analysed, tmp_path,
                                                                        monkeypatch):
    """An ``analyze`` holding the analysis folder (it replaces metrics.csv, then spectra.npz)
    must stop ``figures --out ELSEWHERE`` before its first read, or the figures could mix two
    analyses (issue 35, item 13)."""
    run_dir, _, _ = analysed
    read = []
    monkeypatch.setattr(Table, "read_csv", lambda *a, **k: read.append(a) or 1 / 0)
    with folder_lock(run_dir / "analysis", "analyze"):
        with pytest.raises(NtkplastError, match="analyze"):
            figures.run_figures(run_dir / "analysis", tmp_path / "elsewhere")
    assert not read


def test_rival_figure_draws_an_analysed_runs_rows(analysed):
    """Every family analysed: the curvature, gradient and churn rows the analysis wrote are
    drawn; the run kept no accuracy matrix (eval_previous = false), and panel (d) says so."""
    _, table, _ = analysed
    fig = figures.rival_diagnostics(table)
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    for label, metric in [("Hessian λ_max", "hessian_lambda_max"),
                          ("Gauss–Newton λ_max", "ggn_lambda_max"),
                          ("gradient norm ‖∇L‖", "grad_norm"), ("gradient SNR (right)", "grad_snr"),
                          ("output churn", "output_churn"),
                          ("‖θ − θ₀‖ / ‖θ₀‖ (right)", "param_distance_init_rel")]:
        steps, values = table.series(metric, "all")
        assert len(steps) >= 3, metric
        np.testing.assert_array_equal(lines[label].get_xdata(), steps)
        np.testing.assert_array_equal(lines[label].get_ydata(), values)
    assert [t.get_text() for ax in fig.axes[:3] for t in ax.texts] == []
    assert "eval_previous = false" in fig.axes[3].texts[0].get_text()


def _synthetic_run(seed, sign):
    """Task ends 0…11 with ntk_condition c_t and next-task plasticity monotone in c_t."""
    rng = np.random.default_rng(seed)
    cond = np.sort(rng.uniform(10, 1000, 12))
    rows = []
    for t in range(12):
        rows += [(t, t, "all", "test_accuracy", 0.5), (t, t, "all", "ntk_condition", cond[t])]
        if t:
            rows.append((t, t, "all", "plasticity_score", 0.5 + sign * 1e-4 * cond[t - 1]
                         + 0.01 * rng.standard_normal()))
    cols = list(zip(*rows))
    return Table({"checkpoint": np.array(cols[0]), "step": np.array(cols[1]),
                  "task": np.array(cols[1]), "layer": np.array(cols[2]),
                  "metric": np.array(cols[3]), "value": np.array(cols[4], float)})


def test_kernel_vs_plasticity_shows_the_predictor_tests_rho():
    runs = {"up": [_synthetic_run(s, +1) for s in range(3)],
            "down": [_synthetic_run(10 + s, -1) for s in range(3)]}
    fig = figures.kernel_vs_plasticity(runs)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    offsets = [c.get_offsets() for c in ax.collections]
    assert [len(o) for o in offsets] == [33, 33]  # 3 seeds × 11 (task t, task t + 1) pairs
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for label, method in zip(labels, ["up", "down"]):
        s = stats.compare_predictors({method: runs[method]}, {"x": ("ntk_condition", "all")},
                                     ("plasticity_score", "all"), lag=1).pooled.stats[0]
        assert label == (f"{method}: ρ = {s.rho:+.2f} [{s.ci_low:+.2f}, {s.ci_high:+.2f}], "
                         f"R = 3")
    assert labels[0].startswith("up: ρ = +") and labels[1].startswith("down: ρ = -")
    assert labels[2].startswith("pooled: ρ = ")


class _Page(HTMLParser):
    """The images, headings and table rows of a report page."""

    def __init__(self):
        super().__init__()
        self.images, self.headings, self.rows, self._tag = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.rows += tag == "tr"

    def handle_data(self, data):
        if self._tag in ("h1", "h2", "h3") and data.strip():
            self.headings.append(data.strip())


def _parse(path):
    page = _Page()
    page.feed(path.read_text())
    for src in page.images:  # every image is embedded, and each is a PNG
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    return page


def test_report_of_one_run_from_the_cli(analysed):
    run_dir, _, _ = analysed
    proc = run_cli("report", str(run_dir), cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr
    page = _parse(run_dir / "report.html")
    # diagnostics, rivals (drawn for every run), ntk_spectra, jacobian_spectra, layer shares
    assert len(page.images) == 5
    assert "tasks" in page.headings
    assert page.rows == 1 + 3  # header + one row per task
    assert_one_line_error(run_cli("report", str(run_dir / "nope"), cwd=run_dir.parent),
                          "not a folder")


def test_report_of_a_grid_has_verdicts_predictors_and_every_method(tmp_path):
    base = training.RunConfig(
        seed=0, model=models.ArchSpec(widths=(8,), num_outputs=10),
        stream=streams.StreamSpec(kind="random_labels", num_tasks=4, train_size=64),
        train=training.TrainConfig(steps_per_task=6, batch_size=16, reference_tasks="all",
                                   eval_previous=False))
    grid = run_grid(base, {"adam": {}, "l2": {"name": "l2"}}, [0, 1], tmp_path / "g",
                    settings=analysis.Settings(probe_size=8, spectra_subsample=2),
                    progress=False)
    path = report.write_report(tmp_path / "g")
    page = _parse(path)
    text = path.read_text()
    lines = report.verdict_lines(grid.tables)
    for line in lines:
        assert html.escape(line) in text
    contrast = [line for line in lines if line.startswith("paired contrast")]
    assert len(contrast) == 1 and "l2 − adam" in contrast[0] and "R = 2" in contrast[0]
    assert "R = 2" in text and "predictor test" in page.headings
    assert {"adam, seed0", "l2, seed0"} <= set(page.headings)
    assert len(page.images) >= 4 + 2 * 5  # comparison figures + 5 run figures per method


def test_predictor_test_leaves_out_what_these_runs_cannot_test():
    """Only the NTK condition number is in the synthetic tables: the other predictors are left
    out with the reason, and the test runs on the one that is there."""
    runs = {"up": [_synthetic_run(s, +1) for s in range(3)]}
    comparison, dropped = report.predictor_test(runs)
    assert set(dropped) == set(stats.PREDICTORS) - {"NTK condition number (log)"}
    assert all(stats.PREDICTORS[name][0] in why for name, why in dropped.items())
    assert [s.name for s in comparison.pooled.stats] == ["NTK condition number (log)"]
