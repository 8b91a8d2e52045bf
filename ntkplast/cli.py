"""``ntkplast`` command line: thin verbs over the library.

    ntkplast train CONFIG.toml [--out DIR] [--resume] [--seed N] [--set section.key=value ...]
    ntkplast analyze RUN_DIR [--metrics ntk,isometry,dormancy,curvature,gradient,churn,plasticity]
                     [--probe-size N]
                     [--probe seen|task:K|FILE.npz] [--engine auto] [--out DIR]
    ntkplast figures RUN_DIR [--out DIR]
    ntkplast report RUN_DIR|FOLDER [--out FILE]   (one HTML page: config, tasks, verdicts, figures;
                                                   a branch output's effects)
    ntkplast sweep GRID.toml [--out DIR] [--no-analysis] [--vectorise-seeds]
                   [--executor local|ray] [--ray-address ADDR] [--ray-cpus N] [--ray-gpus N]
                   (a grid with [selection] chooses each method's point on its own seeds first)
    ntkplast demo [--out DIR] [--quick] [--seeds N]   (plasticity lost and kept, end to end)
    ntkplast import SRC_DIR RUN_DIR [--spec FILE] [--pattern REGEX] [--input-shape 28,28,1]
                    [--key-order a,b,…] [--number step|task] [--input-layout chw|hwc]
                    [--framework torch|flax|equinox] [--tree-path params] [--activation NAME]
                    [--probe FILE.npz] [--tasks FILE.csv] [--plasticity-measure COLUMN]
                    [--higher-is-better|--lower-is-better] [--method NAME] [--seed K]
                    [--apply MODULE:FN [--layers MODULE:NAME] [--trainable params]]
    ntkplast tasks RUN_DIR FILE.csv [--plasticity-measure COLUMN] [--lower-is-better]
    ntkplast branch RUN_DIR --at K[,K2,…] --intervention NAME[:ARGS] [--intervention …]
                    [--tasks N] [--out DIR] [--probe-size N]
                    (counterfactual branches: the next task(s) as recorded and after each
                    intervention; prints the paired effect on plasticity and what moved)

Bad input prints one line ``ntkplast: error: …`` and exits with status 2 (so do errors of the
file system and running out of memory); a warning (a checkpoint skipped) is one line
``ntkplast: warning: …``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ntkplast.errors import NtkplastError, one_line, show_warning_line
from ntkplast.experiments import executors


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage plus message."""

    def error(self, message: str):  # type: ignore[override]
        raise NtkplastError(f"{self.prog}: {message} (see --help)")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ntkplast", description="Empirical-NTK diagnostics of plasticity loss.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a continual-learning run into a run folder")
    t.add_argument("config", help="TOML config (see configs/ and ntkplast.training.config)")
    t.add_argument("--out", help="run folder (default: runs/<config name>)")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its last checkpoint")
    _add_common(t)

    a = sub.add_parser("analyze", help="every diagnostic over a run's checkpoints, as one table")
    a.add_argument("run_dir", help="a run folder (manifest.json + checkpoint .npz files)")
    _add_analysis_options(a)
    a.add_argument("--out", help="output folder (default: RUN_DIR/analysis)")
    a.add_argument("--data-dir", help="dataset folder, to rebuild the run's tasks for the probe")
    a.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    f = sub.add_parser("figures", help="draw the figures of an analysed run (diagnostics, rival "
                       "explanations, NTK and Jacobian spectra, layer shares)")
    f.add_argument("run_dir", help="a run folder analysed by `ntkplast analyze`")
    f.add_argument("--analysis", help="analysis folder (default: RUN_DIR/analysis)")
    f.add_argument("--out", help="figure folder (default: the analysis folder)")

    r = sub.add_parser("report", help="write one self-contained report.html for an analysed run "
                       "or a folder of runs (demo, grid, sweep)")
    r.add_argument("folder", help="a run folder, or a folder with analysed runs below it")
    r.add_argument("--out", help="the HTML file (default: FOLDER/report.html)")

    s = sub.add_parser("sweep", help="train and analyse a grid of seeds × methods × settings "
                       "(with [selection]: each method's setting chosen on other seeds first)")
    s.add_argument("grid", help="grid TOML (see configs/grids/ and ntkplast.experiments.sweep)")
    s.add_argument("--out", help="sweep folder (default: runs/<grid name>)")
    s.add_argument("--no-analysis", action="store_true", help="train only")
    s.add_argument("--data-dir", help="folder with MNIST/CIFAR copies (default: $NTKPLAST_DATA)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    s.add_argument("--vectorise-seeds", action="store_true",
                   help="train each method's seeds together in one vmapped program")
    s.add_argument("--executor", choices=executors.EXECUTORS, default="local",
                   help="run the jobs here one after another (local) or as Ray tasks (ray)")
    s.add_argument("--ray-address", help="an existing Ray cluster ('auto', or HOST:PORT; "
                                         "default: $RAY_ADDRESS, else a new local instance)")
    s.add_argument("--ray-cpus", type=float, help="CPUs Ray reserves per job (default 1)")
    s.add_argument("--ray-gpus", type=float, help="GPUs Ray reserves per job (default 0; "
                                                  "1 = one run or seed group per GPU)")

    i = sub.add_parser("import", help="turn a folder of PyTorch checkpoints (.safetensors, "
                                      ".pt, .pth), Orbax checkpoints or Flax msgpack files "
                                      "into a run folder that `analyze` reads")
    i.add_argument("src_dir", help="folder whose file names carry a step or task number")
    i.add_argument("run_dir", help="the new run folder (must not exist)")
    i.add_argument("--spec", help="JSON or TOML file of ArchSpec fields (or a [model] table); "
                                  "default: inferred from the weight shapes")
    i.add_argument("--pattern", default=r"(\d+)",
                   help=r"regex searched in each file name; its first group is the number "
                        r"(default: (\d+))")
    i.add_argument("--input-shape", help="per-example input shape, e.g. 28,28,1 (H,W,C) or 784; "
                                         "needed for CNNs")
    i.add_argument("--key-order", help="comma-separated module names in forward order, when "
                                       "the shapes do not decide it")
    i.add_argument("--number", default="step", choices=("step", "task"),
                   help="what the number in a file name counts (default: step)")
    i.add_argument("--input-layout", default="chw", choices=("chw", "hwc"),
                   help="how the PyTorch model saw images: chw (NCHW, default) or hwc")
    i.add_argument("--framework", default="torch", choices=("torch", "flax", "equinox"),
                   help="who wrote the checkpoints: torch (.safetensors/.pt state dicts, "
                        "default), flax or equinox (Orbax folders, .msgpack, .safetensors)")
    i.add_argument("--tree-path", help="flax/equinox: dotted path to the parameters in a "
                                       "checkpoint's tree (default: params of a train state)")
    i.add_argument("--activation",
                   help="the network's activation when --spec is not given (no default: name "
                        "it, or give --probe with the network's outputs to detect it)")
    i.add_argument("--probe", help="FILE.npz with x (inputs) and outputs (your network's "
                                   "outputs on x): detects or verifies the activation "
                                   "(default: probe.npz in SRC_DIR if present)")
    i.add_argument("--apply", help="keep the model as it is: module:function computing "
                                   "apply(params, x) -> logits on each checkpoint's tree (flax/"
                                   "equinox; a BatchNorm, SiLU, attention…)")
    i.add_argument("--layers", help="with --apply: module:NAME of layer functions "
                                    "f(params, u) -> (z, a), for dormancy and layer Jacobians")
    i.add_argument("--trainable", help="with --apply: the tree entry that training changes "
                                       "(e.g. params beside batch_stats)")
    _add_task_options(i)
    i.add_argument("--method", help="the method a report groups this run under (default: "
                                    "from the folder layout, <method>/seed<k>)")
    i.add_argument("--seed", type=int, help="the run's seed within its method")

    t = sub.add_parser("tasks", help="label an imported run's task ends with a per-task score "
                                     "table (CSV with step, task and score columns)")
    t.add_argument("run_dir", help="an imported run folder")
    t.add_argument("tasks", help="CSV: step (checkpoint's step), task, one column per score")
    _add_task_options(t, positional=True)

    b = sub.add_parser("branch", help="counterfactual branches: from task ends, train the next "
                                      "task(s) as recorded and after each intervention; print "
                                      "the paired effect on plasticity and what moved")
    b.add_argument("run_dir", help="a run folder, or a folder of runs (e.g. a method's seeds)")
    b.add_argument("--at", required=True, help="branch points: task indices, comma-separated "
                                               "(e.g. 4,14,28)")
    b.add_argument("--intervention", action="append", default=[], metavar="NAME[:ARGS]",
                   help="scale_output:c, orthogonalize[:alpha], reset_dead[:tau] (repeat the "
                        "option for several; the control none is always trained)")
    b.add_argument("--tasks", type=int, default=1, help="tasks each branch trains (default 1)")
    b.add_argument("--out", help="output folder (default: RUN_DIR-branches beside RUN_DIR)")
    b.add_argument("--probe-size", type=int, default=128,
                   help="probe inputs of the first-checkpoint diagnostics (default 128)")
    b.add_argument("--data-dir", help="folder with the stream's dataset, if it moved")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    d = sub.add_parser("demo", help="Adam, AdamO and the isometry penalty on random-label "
                                    "memorisation of 256 digits (30 tasks, several seeds): train, "
                                    "analyse, draw, summarise")
    d.add_argument("--out", default="runs/demo", help="experiment folder (default: runs/demo)")
    d.add_argument("--quick", action="store_true",
                   help="a short version (seconds), for smoke tests")
    d.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    _add_common(d)
    _add_analysis_options(d)
    return p


def _add_task_options(p: argparse.ArgumentParser, positional: bool = False) -> None:
    if not positional:
        p.add_argument("--tasks", help="CSV of per-task scores: columns step (the checkpoint "
                                       "that ends the task), task, and one per score")
    p.add_argument("--plasticity-measure", help="the score column that is the plasticity "
                                                "signal (default: the first score column)")
    way = p.add_mutually_exclusive_group()
    way.add_argument("--higher-is-better", dest="higher_is_better", action="store_true",
                     default=True, help="higher values of the measure are better (default)")
    way.add_argument("--lower-is-better", dest="higher_is_better", action="store_false",
                     help="the measure is a loss or an error (plasticity_score = -value)")


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    from ntkplast.analysis.driver import FAMILIES

    p.add_argument("--metrics", default=",".join(FAMILIES),
                   help=f"comma-separated metric families (default: {','.join(FAMILIES)})")
    p.add_argument("--probe-size", type=int, default=None,
                   help="probe inputs N (default 256; the demo: 128)")
    p.add_argument("--probe", default="seen",
                   help="probe source: seen (tasks reached), task:K, or FILE.npz with array x")
    p.add_argument("--engine", default="auto", help="NTK engine (auto, layerwise, generic, nt:…)")
    p.add_argument("--analysis-seed", type=int, default=0, help="seed of the probe draw")
    p.add_argument("--device-count", type=int, default=None,
                   help="shard NTK rows over this many jax devices (default: all visible)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="override the config's seed (demo: the first seed)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting (TOML value), e.g. train.learning_rate=3e-4")
    p.add_argument("--data-dir", help="folder with MNIST/CIFAR copies (default: $NTKPLAST_DATA)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides plus those that ``--seed`` and ``--data-dir`` stand for."""
    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.data_dir is not None:
        overrides.append(f"stream.data_dir={args.data_dir!r}")
    return overrides


def _run_train(args: argparse.Namespace, config_path: str, out: str) -> None:
    from ntkplast import training

    d = training.read_toml(config_path)
    if "env" in d:  # an [env] table: a continual-RL agent (ntkplast.rl.config)
        _run_train_agent(args, d, config_path, out)
        return
    cfg = training.load_config(config_path, _overrides(args))
    run = training.train_run(cfg, out, resume=args.resume, progress=not args.no_progress)
    tasks = run.manifest.get("tasks", [])
    last = tasks[-1] if tasks else {}
    score = last.get("plasticity_score")  # the run's own measure: no test set is needed
    print(f"wrote {len(run)} checkpoints over {len(tasks)} tasks to {out}"
          + (f"; last task {last.get('plasticity_measure')} {score:.4g}"
             if isinstance(score, int | float) else ""))


def _run_train_agent(args: argparse.Namespace, d: dict, config_path: str, out: str) -> None:
    from ntkplast import training
    from ntkplast.rl import config as rl_config
    from ntkplast.rl import loop

    cfg, stream = rl_config.agent_config_from_dict(
        training.apply_overrides(d, _overrides(args), rl_config.SECTIONS), where=config_path)
    loop.train_agent(cfg, stream, out, resume=args.resume, progress=not args.no_progress)
    tasks = loop.read_tasks(out)
    last = tasks[-1]["final_return"] if tasks else None
    print(f"wrote an agent (actor and critic) over {len(tasks)} tasks to {out}"
          + (f"; last task's final return {last:.4g}" if isinstance(last, float) else ""))


def _settings(args: argparse.Namespace):
    from ntkplast import analysis

    size = {} if args.probe_size is None else {"probe_size": args.probe_size}
    return analysis.Settings(metrics=analysis.parse_metrics(args.metrics), probe=args.probe,
                             seed=args.analysis_seed, engine=args.engine,
                             device_count=args.device_count, **size)


def _run_analyze(args: argparse.Namespace, run_dir: str, out: str | None) -> None:
    from ntkplast import analysis

    settings = _settings(args)
    if (Path(run_dir) / "agent.json").exists():  # an RL agent: its actor and its critic
        from ntkplast.rl.analysis import analyze_agent

        table = analyze_agent(run_dir, settings, out_dir=out, progress=not args.no_progress)
    else:
        table = analysis.analyze(run_dir, settings, out_dir=out, data_dir=args.data_dir,
                                 progress=not args.no_progress)
    where = out or str(Path(run_dir) / "analysis")
    print(f"wrote {len(table)} rows to {where}/metrics.csv and metrics.jsonl")  # reads no rows


def _run_figures(run_dir: str, analysis_dir: str | None, out: str | None) -> None:
    from ntkplast import figures

    analysis_dir = analysis_dir or str(Path(run_dir) / "analysis")
    paths = figures.run_figures(analysis_dir, out, title=Path(run_dir).name)
    print("wrote " + ", ".join(str(p) for p in paths))


def _run_sweep(args: argparse.Namespace) -> None:
    from ntkplast.experiments import selection, sweep

    given = {flag: (option, value) for flag, option, value in (
        ("--ray-address", "address", args.ray_address), ("--ray-cpus", "num_cpus", args.ray_cpus),
        ("--ray-gpus", "num_gpus", args.ray_gpus)) if value is not None}
    if given and args.executor != "ray":
        raise NtkplastError(f"{', '.join(given)} need(s) --executor ray")
    ray_options = dict(given.values())
    out = args.out or str(Path("runs") / Path(args.grid).stem)
    executor = executors.make_executor(args.executor, **ray_options)
    results = sweep.run_sweep(args.grid, out, analyze=not args.no_analysis,
                              progress=not args.no_progress, data_dir=args.data_dir,
                              vectorise_seeds=args.vectorise_seeds, executor=executor)
    runs = sum(len(d) for r in results.values() for d in r.run_dirs.values())
    print(f"{runs} runs over {len(results)} point(s) in {out}"
          + ("" if args.no_analysis else f"; joined analysis in {out}/summary.csv"))
    record = selection.read_record(out)
    if record is not None:
        print(f"points chosen on the selection seeds (scores and runs: {out}/"
              f"{selection.RECORD}, {out}/selection/):")
        for line in selection.summary_lines(record):
            print(f"  {line}")
    if not args.no_analysis:
        from ntkplast.experiments import report

        print(f"report: {report.write_report(out)}")


def _run_import(args: argparse.Namespace) -> None:
    from ntkplast.runs import interop

    shape = None
    if args.input_shape is not None:
        parts = args.input_shape.replace("x", ",").split(",")
        if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise NtkplastError(f"--input-shape {args.input_shape!r}: expected positive "
                                f"integers separated by commas, e.g. 28,28,1")
        shape = tuple(int(p) for p in parts)
    spec = interop.load_spec_file(args.spec) if args.spec else None
    order = [k.strip() for k in args.key_order.split(",")] if args.key_order else None
    common = dict(pattern=args.pattern, input_shape=shape, number=args.number,
                  reference=args.probe, tasks=args.tasks,
                  plasticity_measure=args.plasticity_measure,
                  higher_is_better=args.higher_is_better, method=args.method, seed=args.seed)
    if args.apply is not None:
        from ntkplast.runs import jax_import

        if args.framework == "torch" or spec is not None or args.activation:
            raise NtkplastError("--apply keeps a JAX model as it is: use it with --framework "
                                "flax or equinox, without --spec or --activation")
        run = jax_import.import_function_folder(
            args.src_dir, args.run_dir, apply=args.apply, layers=args.layers,
            trainable=args.trainable, tree_path=args.tree_path, **common)
        print(f"wrote {len(run)} checkpoints (function model {args.apply}) to {args.run_dir}; "
              f"analyse with: ntkplast analyze {args.run_dir} --probe FILE.npz")
        return
    common.update(spec=spec, key_order=order, activation=args.activation)
    if args.framework == "torch":
        run = interop.import_folder(args.src_dir, args.run_dir, input_layout=args.input_layout,
                                    **common)
    else:
        from ntkplast.runs import jax_import

        run = jax_import.import_jax_folder(args.src_dir, args.run_dir, framework=args.framework,
                                           tree_path=args.tree_path, **common)
    how = run.manifest["imported_from"]["activation_from"]
    tasks = f", {len(run.manifest['tasks'])} task ends" if "task_scores" in run.manifest else ""
    print(f"wrote {len(run)} checkpoints ({run.spec.kind}, {run.spec.activation} from {how}, "
          f"input shape {list(run.input_shape)}{tasks}) to {args.run_dir}; analyse with: "
          f"ntkplast analyze {args.run_dir} --probe FILE.npz")


def _branch_points(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise NtkplastError(f"--at {text!r}: expected task indices separated by commas, e.g. "
                            f"4,14,28")
    return [int(p) for p in parts]


def _run_branch(args: argparse.Namespace) -> None:
    from ntkplast import branches, figures
    from ntkplast.experiments import report

    root = Path(args.run_dir)
    out = Path(args.out) if args.out else root.parent / f"{root.resolve().name}-branches"
    made = branches.branch(root, _branch_points(args.at), args.intervention, out=out,
                           tasks=args.tasks, progress=not args.no_progress,
                           data_dir=args.data_dir)
    comparison = branches.compare_branches(out, probe_size=args.probe_size,
                                           data_dir=args.data_dir)
    written = branches.write_comparison(out, comparison)
    written += figures.save(figures.branch_effects(comparison, title=f"branches of {root.name}"),
                            out / "branch_effects")
    written.append(report.write_report(out))
    print("\n".join(comparison.lines()))
    print(f"{len(made)} branches in {out}; wrote " + ", ".join(p.name for p in written))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ntkplast`` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    shown, warnings.showwarning = warnings.showwarning, show_warning_line  # one line each
    try:
        args = _build_parser().parse_args(argv)
        if args.verb == "train":
            out = args.out or str(Path("runs") / Path(args.config).stem)
            _run_train(args, args.config, out)
        elif args.verb == "analyze":
            _run_analyze(args, args.run_dir, args.out)
        elif args.verb == "sweep":
            _run_sweep(args)
        elif args.verb == "demo":
            from ntkplast.experiments import demo

            settings = dataclasses.replace(_settings(args), probe_size=args.probe_size
                                           or demo.DEMO_PROBE_SIZE)
            demo.run_demo(args.out, quick=args.quick, seeds=args.seeds, settings=settings,
                          overrides=_overrides(args), progress=not args.no_progress)
        elif args.verb == "figures":
            _run_figures(args.run_dir, args.analysis, args.out)
        elif args.verb == "import":
            _run_import(args)
        elif args.verb == "tasks":
            from ntkplast.runs import task_scores

            run = task_scores.attach_task_scores(args.run_dir, args.tasks,
                                                 plasticity_measure=args.plasticity_measure,
                                                 higher_is_better=args.higher_is_better)
            print(f"labelled {len(run.manifest['tasks'])} task ends of {args.run_dir}; "
                  f"analyse it again: ntkplast analyze {args.run_dir} --probe FILE.npz")
        elif args.verb == "branch":
            _run_branch(args)
        elif args.verb == "report":
            from ntkplast.experiments import report

            print(f"wrote {report.write_report(args.folder, args.out)}")
    except NtkplastError as e:
        print(f"ntkplast: error: {one_line(e)}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as e:  # the file system or the machine, not a bug: one line
        print(f"ntkplast: error: {one_line(f'{type(e).__name__}: {e}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ntkplast: interrupted; continue with the same command (for train: plus --resume)",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
    return 0


if __name__ == "__main__":
    sys.exit(main())
