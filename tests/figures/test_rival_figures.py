"""The rival-explanations figure draws curvature, gradient, churn and forgetting rows of a run."""

import numpy as np
import pytest

from ntkplast import figures
from ntkplast.errors import NtkplastError
from ntkplast.table import Table

STEPS = [0, 10, 20, 30, 40, 50]  # checkpoints 0…5; tasks end at checkpoints 2 and 5
ENDS = (2, 5)
CURVES = {  # legend label: (metric, checkpoints it is written at)
    "Hessian λ_max": ("hessian_lambda_max", range(6)),
    "Gauss–Newton λ_max": ("ggn_lambda_max", range(6)),
    "Hessian effective rank (right)": ("hessian_effective_rank", range(6)),
    "Gauss–Newton effective rank (right)": ("ggn_effective_rank", range(6)),
    "gradient norm ‖∇L‖": ("grad_norm", range(6)),
    "optimization readiness": ("optimization_readiness", range(6)),
    "gradient SNR (right)": ("grad_snr", range(6)),
    "output churn": ("output_churn", range(1, 6)),  # nothing before the first checkpoint
    "‖θ − θ₀‖ / ‖θ₀‖ (right)": ("param_distance_init_rel", range(6)),
    "average accuracy (ACC)": ("average_accuracy", ENDS),
    "backward transfer (BWT)": ("backward_transfer", ENDS[1:]),  # from the second task on
    "forgetting (F)": ("forgetting", ENDS[1:]),
}


def _task_ends(ckpts=ENDS):
    return [(ck, STEPS[ck], ck // 3, "all", "test_accuracy", 0.9) for ck in ckpts]


def _rival_table():
    rng = np.random.default_rng(0)
    rows = _task_ends()
    for metric, ckpts in CURVES.values():
        rows += [(ck, STEPS[ck], ck // 3, "all", metric, float(rng.uniform(0.1, 5)))
                 for ck in ckpts]
    # rows the figure must not mix in: other layers, undrawn metrics
    rows += [(ck, STEPS[ck], ck // 3, layer, metric, 99.0) for ck in range(6)
             for layer, metric in [("layer0", "grad_norm"), ("layer0", "param_distance_init_rel"),
                                   ("layer0", "feature_norm"), ("all", "prediction_churn")]]
    return Table.from_rows(rows)


def _drawn(fig):
    """Labelled lines on every axis (twins included); task-end lines have ``_`` labels."""
    return {line.get_label(): (ax, line) for ax in fig.axes for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_rival_diagnostics_draw_each_metric_against_its_steps():
    table = _rival_table()
    fig = figures.rival_diagnostics(table, title="run")
    drawn = _drawn(fig)
    assert set(drawn) == set(CURVES)
    for label, (metric, ckpts) in CURVES.items():
        _, line = drawn[label]
        steps, values = table.series(metric, "all")
        np.testing.assert_array_equal(line.get_xdata(), [STEPS[ck] for ck in ckpts])
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_array_equal(line.get_ydata(), values)
    panels = fig.axes[:4]
    assert [ax.get_title()[:3] for ax in panels] == ["(a)", "(b)", "(c)", "(d)"]
    assert not any(ax.texts for ax in panels)  # nothing to explain
    for label, scale in [("Hessian λ_max", "log"), ("Hessian effective rank (right)", "linear"),
                         ("gradient norm ‖∇L‖", "log"), ("gradient SNR (right)", "log"),
                         ("output churn", "log"), ("‖θ − θ₀‖ / ‖θ₀‖ (right)", "linear"),
                         ("forgetting (F)", "linear")]:
        assert drawn[label][0].get_yscale() == scale, label
    # the right-axis curves sit on a twin of their panel, the others on the panel itself
    assert drawn["gradient SNR (right)"][0] not in panels
    assert drawn["gradient norm ‖∇L‖"][0] is panels[1]
    # each panel has the grey task-end lines at the steps of the task ends
    ends = {STEPS[ck] for ck in ENDS}
    for ax in panels:
        assert {line.get_xdata()[0] for line in ax.get_lines()
                if line.get_label().startswith("_") and line.get_xdata()[0] == line.get_xdata()[1]
                } == ends


def _whys(fig):
    return [" ".join(t.get_text() for t in ax.texts) for ax in fig.axes[:4]]


def test_each_empty_panel_says_why():
    fig = figures.rival_diagnostics(Table.from_rows(
        _task_ends() + [(0, 0, 0, "all", "ntk_trace", 1.0)]))
    assert _drawn(fig) == {}
    curvature, gradient, churn, forgetting = _whys(fig)
    assert "not analysed" in curvature and "--metrics …,curvature" in curvature
    assert "--metrics …,gradient" in gradient and "no labels" in gradient
    assert "--metrics …,churn" in churn
    assert "no accuracy matrix" in forgetting and "eval_previous = false" in forgetting
    # without task ends the plasticity family is what is missing
    fig = figures.rival_diagnostics(Table.from_rows([(0, 0, 0, "all", "ntk_trace", 1.0)]))
    assert "no task ends" in _whys(fig)[3] and "--metrics …,plasticity" in _whys(fig)[3]
    with pytest.raises(NtkplastError, match="empty"):
        figures.rival_diagnostics(Table.from_rows([]))


def test_only_the_curvature_panel_is_empty_without_curvature_rows():
    table = _rival_table()
    keep = ~np.isin(table.columns["metric"], ["hessian_lambda_max", "ggn_lambda_max",
                                               "hessian_effective_rank", "ggn_effective_rank"])
    fig = figures.rival_diagnostics(Table({k: v[keep] for k, v in table.columns.items()}))
    whys = _whys(fig)
    assert "curvature" in whys[0] and whys[1:] == ["", "", ""]
    assert not any("λ_max" in label or "rank" in label for label in _drawn(fig))


def test_run_figure_set_has_the_rivals_figure(tmp_path):
    table = _rival_table()
    table.write(tmp_path)
    figs = figures.run_figure_set(tmp_path)
    assert list(figs)[:2] == ["diagnostics", "rivals"]
    _, line = _drawn(figs["rivals"])["output churn"]
    np.testing.assert_array_equal(line.get_ydata(), table.series("output_churn", "all")[1])


def test_a_log_panel_without_positive_values_stays_linear(recwarn):
    """Output churn is 0 where nothing changed: drawn, on a linear axis, without a warning."""
    fig = figures.rival_diagnostics(Table.from_rows(
        [(ck, STEPS[ck], 0, "all", "output_churn", 0.0) for ck in range(1, 4)]))
    ax, line = _drawn(fig)["output churn"]
    assert ax.get_yscale() == "linear" and list(line.get_ydata()) == [0.0, 0.0, 0.0]
    assert not [w for w in recwarn if "log" in str(w.message)]
