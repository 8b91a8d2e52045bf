"""Continual PPO end to end at a tiny size: it learns, writes a run that resumes byte for byte,
records returns and references per task, and analyses its actor and critic."""

import json
import pathlib
import shutil

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

pytest.importorskip("gymnax", reason="the RL extra (gymnax) is not installed in this environment")

from ntkplast.errors import NtkplastError  # noqa: E402
from ntkplast.rl import config as rl_config  # noqa: E402
from ntkplast.rl import loop  # noqa: E402
from ntkplast.runs import checkpoints  # noqa: E402

TINY = {"seed": 3, "env": {"kind": "permuted_observations", "games": ["Breakout-MinAtar"],
                           "num_tasks": 3},
        "actor": {"widths": [16]}, "critic": {"widths": [16]},
        "ppo": {"num_envs": 4, "num_steps": 8, "epochs": 2, "minibatches": 2},
        "train": {"steps_per_task": 64, "updates_per_chunk": 1, "reference_tasks": "every:2",
                  "probe_states": 3}}


def _tiny(**changes):
    d = json.loads(json.dumps(TINY))
    for section, values in changes.items():
        d[section] = {**d.get(section, {}), **values}
    return rl_config.agent_config_from_dict(d)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".ntkplast.lock"}


@pytest.fixture(scope="module")
def tiny_agent(tmp_path_factory):
    cfg, stream = _tiny()
    return loop.train_agent(cfg, stream, tmp_path_factory.mktemp("agent") / "run",
                            progress=False)


def test_the_run_holds_both_networks_and_the_returns(tiny_agent):
    tasks = loop.read_tasks(tiny_agent)
    assert [t["task"] for t in tasks] == [0, 1, 2]
    for net in loop.NETWORKS:
        run = checkpoints.open_run(tiny_agent / net)
        assert run.complete and [c.kind for c in run.checkpoints] == ["init"] + ["task_end"] * 3
        assert [c.step for c in run.checkpoints] == [0, 64, 128, 192]
        assert run.manifest["tasks"] == tasks
    assert checkpoints.open_run(tiny_agent / "actor").spec.num_outputs == 3  # Breakout: n, l, r
    assert checkpoints.open_run(tiny_agent / "critic").spec.num_outputs == 1
    assert {k for k in tasks[0] if "reference" in k} == {"reference_final_return"}
    assert tasks[0]["plasticity_loss_baseline"] == tasks[0]["plasticity_loss"]  # plain PPO
    assert "reference_final_return" not in tasks[1] and "reference_final_return" in tasks[2]
    for t in tasks:
        assert t["env_steps"] == 64 and t["updates"] == 2 and t["plasticity_measure"] == \
            "final_return"
    assert len(list((tiny_agent / "visited").glob("task_*.npz"))) == 3


def test_a_killed_run_resumes_to_the_same_bytes(tiny_agent, tmp_path):
    cfg, stream = _tiny()
    part = tmp_path / "part"
    loop.train_agent(cfg, stream, part, progress=False, stop_after_tasks=1)
    assert len(loop.read_tasks(part)) == 1
    # a kill between the two networks' manifests: the actor has task 1, the critic has not
    loop.train_agent(cfg, stream, tmp_path / "ahead", progress=False, stop_after_tasks=2)
    shutil.copy(tmp_path / "ahead/actor/manifest.json", part / "actor/manifest.json")
    for f in (tmp_path / "ahead/actor").glob("ckpt_*.npz"):
        shutil.copy(f, part / "actor" / f.name)
    with pytest.raises(NtkplastError, match="--resume"):
        loop.train_agent(cfg, stream, part, progress=False)
    loop.train_agent(cfg, stream, part, progress=False, resume=True)
    assert _files(part) == _files(tiny_agent)


def test_a_different_config_is_not_resumed(tiny_agent, tmp_path):
    other, stream = _tiny(ppo={"learning_rate": 1e-3})
    copy = shutil.copytree(tiny_agent, tmp_path / "copy")
    with pytest.raises(NtkplastError, match="different configuration"):
        loop.train_agent(other, stream, copy, progress=False, resume=True)


def test_an_agent_learns_breakout_at_a_small_budget(tmp_path):
    """64 environments × 16 steps × 60 updates (61,440 steps): the final return beats a random
    policy's (about 0.3 a episode on Breakout-MinAtar at this length)."""
    cfg, stream = rl_config.agent_config_from_dict({
        "seed": 0, "env": {"kind": "games", "games": ["Breakout-MinAtar"], "num_tasks": 1},
        "actor": {"widths": [64, 64]}, "critic": {"widths": [64, 64]},
        "ppo": {"num_envs": 64, "num_steps": 16, "epochs": 4, "minibatches": 4,
                "learning_rate": 1e-3},
        "train": {"steps_per_task": 61_440, "updates_per_chunk": 20}})
    loop.train_agent(cfg, stream, tmp_path / "run", progress=False)
    task = loop.read_tasks(tmp_path / "run")[0]
    assert task["final_return"] > 2 * max(task["online_return"], 0.3)


def test_analyze_writes_actor_and_critic_rows(tiny_agent, tmp_path):
    from ntkplast import analysis
    from ntkplast.rl.analysis import analyze_agent

    families = ("ntk", "isometry", "dormancy", "plasticity")
    table = analyze_agent(tiny_agent, analysis.Settings(probe_size=6, metrics=families),
                          out_dir=tmp_path / "analysis", progress=False)
    layer, metric = table.columns["layer"], table.columns["metric"]
    value = table.columns["value"].astype(float)
    for net in ("actor", "critic"):
        mine = np.char.startswith(layer.astype(str), f"{net}/")
        for family in ("ntk_trace", "jac_isometry_deviation", "dormant_fraction"):
            rows = mine & np.char.startswith(metric.astype(str), family)
            assert rows.any(), (net, family)
            assert np.isfinite(value[rows]).any(), (net, family)
    shared = layer == "all"  # the agent's returns and losses, once per task end
    assert set(metric[shared]) >= {"final_return", "online_return", "plasticity_score"}
    assert len(table.select(metric="final_return")) == 4 - 1  # the task ends, not the init
    assert all(str(x).startswith(("actor/", "critic/")) for x in layer[~shared])
    assert (tmp_path / "analysis/metrics.csv").is_file()


def test_figures_and_report_of_an_analysed_agent(tiny_agent, tmp_path):
    agent = shutil.copytree(tiny_agent, tmp_path / "agent")
    for verb, extra in (("analyze", ("--probe-size", "6", "--metrics", "ntk,dormancy,plasticity",
                                     "--no-progress")), ("figures", ()), ("report", ())):
        proc = run_cli(verb, "agent", *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    html = (agent / "report.html").read_text()
    assert "final_return" in html and "reference_final_return" in html and "<img" in html
    assert "plasticity loss vs the common baseline" in html


def test_the_cli_trains_an_rl_config_and_refuses_a_bad_one(tmp_path):
    text = ("seed = 1\n[env]\nkind = \"games\"\ngames = [\"Breakout-MinAtar\"]\nnum_tasks = 1\n"
            "[actor]\nwidths = [8]\n[critic]\nwidths = [8]\n"
            "[ppo]\nnum_envs = 4\nnum_steps = 8\nepochs = 1\nminibatches = 1\n"
            "[train]\nsteps_per_task = 32\n")
    (tmp_path / "rl.toml").write_text(text)
    proc = run_cli("train", "rl.toml", "--out", "run", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "over 1 tasks" in proc.stdout
    proc = run_cli("analyze", "run", "--probe-size", "4", "--metrics", "ntk,dormancy",
                   "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "bad.toml").write_text(text.replace("Breakout", "Pong"))
    assert_one_line_error(run_cli("train", "bad.toml", "--out", "r2", cwd=tmp_path), "games")
    assert_one_line_error(run_cli("train", "rl.toml", "--out", "r3", "--set", "ppo.gamma=2",
                                  cwd=tmp_path), "gamma")


RL_CONFIGS = sorted((pathlib.Path(__file__).parents[2] / "configs" / "rl").glob("*.toml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", RL_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_rl_config_trains_at_a_tiny_size(tmp_path, path):
    sets = ["env.num_tasks=2", "ppo.num_envs=4", "ppo.num_steps=8", "ppo.minibatches=2",
            "ppo.epochs=1", "train.steps_per_task=32", "actor.widths=[8]", "critic.widths=[8]"]
    proc = run_cli("train", str(path), "--out", "run", "--no-progress",
                   *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "over 2 tasks" in proc.stdout
    assert loop.read_agent(tmp_path / "run")["complete"]


@pytest.mark.parametrize("method", [{"name": "l2", "lam": 1e-3}, {"name": "isometry"},
                                    {"name": "adamo"}, {"name": "redo", "every": 1},
                                    {"name": "cbp", "replacement_rate": 0.5,
                                     "maturity_threshold": 1},  # acts within 16 steps
                                    {"name": "shrink_perturb"},
                                    {"name": "fire"}])
def test_every_method_trains_an_agent_and_changes_it(tmp_path, method):
    """Each method's hooks reach both networks: the agent differs from plain PPO's on the same
    seed (ReDo and CBP score units on the minibatch's observations; FIRE acts at task ends), and
    a fresh plain-PPO agent is the common baseline on reference tasks."""
    nets = {"env": {"num_tasks": 2}, "actor": {"widths": [16, 16]},
            "critic": {"widths": [16, 16]}}
    plain = loop.train_agent(*_tiny(**nets), tmp_path / "plain", progress=False)
    run = loop.train_agent(*_tiny(**nets, method=method), tmp_path / "method", progress=False)
    last = [checkpoints.open_run(d / "actor") for d in (plain, run)]
    mine, theirs = (r.params(len(r) - 1) for r in last)
    assert any(not np.array_equal(a["W"], b["W"]) for a, b in zip(mine, theirs, strict=True))
    task0 = loop.read_tasks(run)[0]
    assert "baseline_final_return" in task0 and "plasticity_loss_baseline" in task0
