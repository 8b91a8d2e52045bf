"""Continual training over a task stream, writing a checkpoint series.

One jit-compiled step (cross-entropy + optional penalty, an optax update, an optional
post-update transform) is scanned over chunks of minibatches; a chunk ends at every checkpoint,
so an interrupted run resumes from its last checkpoint with the same chunking and ends with
bit-identical parameters. Minibatch order, initialisation and reference runs are pure functions
of the seed. :func:`train_seeds` trains several seeds of one configuration in a single program,
``jax.vmap``-ed over the seeds, each into its own run folder.

Observed plasticity (Dohare et al. 2024, "Loss of plasticity in deep continual learning"):
for each task t, the test accuracy at the end of its budget and the *online* accuracy — the
accuracy on each training minibatch before the step that trains on it, averaged over the task.
The *reset reference* trains a freshly initialised network on task t alone with the same budget
and minibatch order; plasticity loss at t is the reference's accuracy minus the run's.
Regression streams (``TrainConfig.loss = "mse"``) report mean squared errors instead, and their
plasticity loss is the run's error minus the reference's (positive: plasticity lost).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ntkplast import checkpoints, custom_streams, models, streams
from ntkplast.errors import NtkplastError

Array = jax.Array
OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
      optimizer: ``"sgd"``, ``"momentum"`` (heavy ball) or ``"adam"`` (optax).
      learning_rate: step size η.
      momentum: β for ``"momentum"``; Adam uses optax's defaults (β1 = 0.9, β2 = 0.999).
      batch_size: minibatch size B.
      steps_per_task: training steps per task (set this or ``epochs_per_task``; 500 when
        neither is given).
      epochs_per_task: passes over the task's training set, converted to
        ⌈epochs · N_train / B⌉ steps.
      checkpoint_every: also checkpoint every this many steps inside a task (0: only at task
        boundaries and at initialisation).
      reference_tasks: which tasks get a reset-reference run: ``"all"``, ``"none"``, a list of
        task indices, or ``"every:k"`` (tasks 0, k, 2k, …).
      eval_previous: evaluate every earlier task after each task (the accuracy matrix).
      loss: ``"cross_entropy"`` (classification; the run records accuracies) or ``"mse"``
        (regression on float targets; the run records mean squared errors): :data:`OBJECTIVES`.
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 32
    steps_per_task: int | None = None
    epochs_per_task: float | None = None
    checkpoint_every: int = 0
    reference_tasks: str | list[int] = "none"
    eval_previous: bool = True
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise NtkplastError(f"train.optimizer: unknown {self.optimizer!r}; "
                                f"choose one of {list(OPTIMIZERS)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise NtkplastError(f"train.learning_rate must be a positive number, "
                                f"got {self.learning_rate}")
        if self.batch_size < 1:
            raise NtkplastError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.steps_per_task is None and self.epochs_per_task is None:
            object.__setattr__(self, "steps_per_task", 500)
        if self.steps_per_task is not None and self.epochs_per_task is not None:
            raise NtkplastError("train: give steps_per_task or epochs_per_task, not both")
        if self.steps_per_task is not None and self.steps_per_task < 1:
            raise NtkplastError(f"train.steps_per_task must be >= 1, got {self.steps_per_task}")
        if self.epochs_per_task is not None and not self.epochs_per_task > 0:
            raise NtkplastError(f"train.epochs_per_task must be > 0, got {self.epochs_per_task}")
        if self.checkpoint_every < 0:
            raise NtkplastError("train.checkpoint_every must be >= 0 (0 = task boundaries only)")
        reference_task_set(self.reference_tasks, 1)  # validates the form
        if self.loss not in OBJECTIVES:
            raise NtkplastError(f"train.loss: unknown {self.loss!r}; choose one of "
                                f"{list(OBJECTIVES)}")

    def steps_for(self, num_train: int) -> int:
        """Training steps per task for a task with ``num_train`` training examples."""
        if self.steps_per_task is not None:
            return self.steps_per_task
        return math.ceil(self.epochs_per_task * num_train / self.batch_size)


def reference_task_set(value: str | Sequence[int], num_tasks: int) -> frozenset[int]:
    """Resolve ``TrainConfig.reference_tasks`` to the set of task indices."""
    if isinstance(value, str):
        if value == "all":
            return frozenset(range(num_tasks))
        if value == "none":
            return frozenset()
        if value.startswith("every:") and value[6:].isdigit() and int(value[6:]) > 0:
            return frozenset(range(0, num_tasks, int(value[6:])))
    elif all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        return frozenset(t for t in value if t < num_tasks)
    raise NtkplastError(f"train.reference_tasks must be 'all', 'none', 'every:k' or a list of "
                        f"task indices, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Hooks:
    """Where regularizers and reset methods plug into training.

    Attributes:
      penalty: ``penalty(params) -> scalar`` added to the loss (coupled regularizers: L2,
        isometry, L2 Init …). Traced inside the jitted step.
      post_update: ``post_update(params, key, step) -> params`` applied after each optimizer
        step (decoupled steps: shrink & perturb, AdamO's isometry step). Traced inside the step;
        ``key`` is derived from the run seed and the global step.
      post_step: ``post_step(params, opt_state, xb, key, step) -> (params, opt_state)`` applied
        after ``post_update``, with the step's minibatch inputs ``xb`` (unit resets that score
        units on the data: ReDo, continual backprop). Traced inside the step.
      on_task_end: ``on_task_end(params, opt_state, task, key) -> (params, opt_state)`` called
        (outside jit) after each task's evaluation and before its checkpoint (resets).
      optimizer: ``optimizer(tx) -> tx`` wraps the run's optax optimizer (decoupled gradients
        such as L2 Init's, or a method that keeps its own state in the optimizer state).

    Everything but ``on_task_end`` also applies to the reset-reference runs, so the reference is
    the same method trained from a fresh initialisation.
    """

    penalty: Callable[[models.Params], Array] | None = None
    post_update: Callable[[models.Params, Array, Array], models.Params] | None = None
    post_step: Callable[[models.Params, Any, Array, Array, Array],
                        tuple[models.Params, Any]] | None = None
    on_task_end: Callable[[models.Params, Any, int, Array], tuple[models.Params, Any]] | None = None
    optimizer: Callable[[optax.GradientTransformation],
                        optax.GradientTransformation] | None = None


class TrainState(NamedTuple):
    """What a step carries: parameters, optimizer state, and the global step."""

    params: models.Params
    opt_state: Any
    step: Array


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """The optax transformation named by ``cfg.optimizer``."""
    if cfg.optimizer == "sgd":
        return optax.sgd(cfg.learning_rate)
    if cfg.optimizer == "momentum":
        return optax.sgd(cfg.learning_rate, momentum=cfg.momentum)
    return optax.adam(cfg.learning_rate)


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy −(1/B) Σ_i log softmax(f(x_i))_{y_i}."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def mean_squared_error(outputs: Array, targets: Array) -> Array:
    """(1/(B·K)) Σ_i ‖f(x_i) − y_i‖², targets ``B × K`` (or ``B`` for one output)."""
    return jnp.mean(squared_errors(outputs, targets))


def correct(logits: Array, labels: Array) -> Array:
    """Per example 1 if argmax_k f_k(x_i) = y_i, else 0."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def squared_errors(outputs: Array, targets: Array) -> Array:
    """Per example (1/K) ‖f(x_i) − y_i‖²."""
    return jnp.mean((outputs - targets.reshape(outputs.shape)) ** 2, axis=-1)


class Objective(NamedTuple):
    """A training loss, the per-example score a run reports, and the score's name.

    The online score of a task is the mean of ``score`` over every training example of the task,
    each taken before the step that trains on it; the test score its mean over the test set.
    ``plasticity_loss`` is signed so that a positive value always means the run learned the task
    worse than its reset reference.
    """

    loss: Callable[[Array, Array], Array]
    score: Callable[[Array, Array], Array]
    metric: str
    higher_is_better: bool


OBJECTIVES: dict[str, Objective] = {
    "cross_entropy": Objective(cross_entropy, correct, "accuracy", True),
    "mse": Objective(mean_squared_error, squared_errors, "mse", False),
}


class Trainer(NamedTuple):
    """Jit-compiled pieces of training, built once per (model, optimizer, hooks, objective).

    ``run_chunk(state, x, y, idx)`` scans the steps of one chunk with the trainer's step key;
    ``run_chunk_keyed(state, x, y, idx, step_key)`` is the same with the key as an argument;
    ``run_chunks(state, x, y, idx, step_keys)`` is ``run_chunk_keyed`` vmapped over S runs
    (parameters, optimizer states, ``idx`` of shape S × C × B and keys stacked on axis 0; the
    global step shared). ``evaluate(params, x, y)`` is the objective's mean score (accuracy, or
    mean squared error).
    """

    run_chunk: Callable[..., tuple[TrainState, tuple[Array, Array]]]
    run_chunk_keyed: Callable[..., tuple[TrainState, tuple[Array, Array]]]
    run_chunks: Callable[..., tuple[TrainState, tuple[Array, Array]]]
    evaluate: Callable[[models.Params, Array, Array], float]


def make_trainer(model: models.Model, tx: optax.GradientTransformation, hooks: Hooks,
                 step_key: Array, objective: Objective = OBJECTIVES["cross_entropy"]) -> Trainer:
    """Build the jitted chunk runners (:class:`Trainer`).

    ``idx`` is ``C × B`` minibatch indices into the task's ``x``/``y`` (on device); a chunk
    scans C steps and returns the new state and per-step (loss, summed score before the step;
    for classification the number correct). The key of step t is ``fold_in(step_key, t)``.
    """

    def loss_fn(params, xb, yb):
        outputs = model.apply(params, xb)
        loss = objective.loss(outputs, yb)
        if hooks.penalty is not None:
            loss = loss + hooks.penalty(params)
        return loss, jnp.sum(objective.score(outputs, yb))

    def step(state: TrainState, batch_idx, x, y, step_key):
        xb, yb = x[batch_idx], y[batch_idx]
        (loss, score), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, xb, yb)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        key = jax.random.fold_in(step_key, state.step)
        if hooks.post_update is not None:
            params = hooks.post_update(params, key, state.step)
        if hooks.post_step is not None:
            params, opt_state = hooks.post_step(params, opt_state, xb,
                                                jax.random.fold_in(key, 1), state.step)
        return TrainState(params, opt_state, state.step + 1), (loss, score)

    def scan_chunk(state, x, y, idx, step_key):
        return jax.lax.scan(lambda s, b: step(s, b, x, y, step_key), state, idx)

    run_chunk_keyed = jax.jit(scan_chunk)
    lanes = TrainState(0, 0, None)  # the global step is shared by vectorised runs
    run_chunks = jax.jit(jax.vmap(scan_chunk, in_axes=(lanes, None, None, 0, 0),
                                  out_axes=(lanes, 0)))

    def run_chunk(state, x, y, idx):
        return run_chunk_keyed(state, x, y, idx, step_key)

    @jax.jit
    def score_sum(params, x, y):
        return jnp.sum(objective.score(model.apply(params, x), y))

    def evaluate(params, x, y, batch: int = 2048):
        n = len(y)
        total = sum(float(score_sum(params, x[i:i + batch], y[i:i + batch]))
                    for i in range(0, n, batch))
        return total / max(n, 1)

    return Trainer(run_chunk, run_chunk_keyed, run_chunks, evaluate)


def minibatch_indices(seed: int, task: int, num_train: int, batch_size: int,
                      start: int, stop: int) -> np.ndarray:
    """Indices of minibatches ``start … stop-1`` of task ``task`` (shape ``(stop-start) × B``).

    Epoch e of task t visits the training set in the order ``default_rng([seed, 1, t, e])
    .permutation(N)``; minibatches run through the epochs back to back, so the order is fixed by
    (seed, task) alone and a resumed run sees exactly the same minibatches.
    """
    first, last = start * batch_size, stop * batch_size
    epochs = range(first // num_train, (last - 1) // num_train + 1)
    order = np.concatenate([np.random.default_rng([seed, 1, task, e]).permutation(num_train)
                            for e in epochs])
    offset = epochs[0] * num_train
    return order[first - offset:last - offset].reshape(stop - start, batch_size).astype(np.int32)


# TrainConfig fields added after format v1 shipped: left out of the manifest at their default
# value, so runs written before them still resume (their stored config compares equal).
_ADDED_TRAIN_FIELDS = {"loss": "cross_entropy"}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run is reproducible from: seed, model, stream, training settings, method.

    ``method`` is plain data naming a regularizer or reset method and its options
    (``{"name": "adamo", "lam": 1e-3}``; :func:`ntkplast.regularizers.make_hooks`); empty for
    plain training.
    """

    seed: int = 0
    model: models.ArchSpec = dataclasses.field(default_factory=models.ArchSpec)
    stream: streams.StreamSpec = dataclasses.field(default_factory=streams.StreamSpec)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    method: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as stored in the manifest (``method`` only when one is set, newer
        training fields only when they differ from their default)."""
        train = dataclasses.asdict(self.train)
        for key, default in _ADDED_TRAIN_FIELDS.items():  # absent from older manifests
            if train[key] == default:
                del train[key]
        d = {"seed": self.seed, "model": self.model.to_dict(),
             "stream": self.stream.to_dict(), "train": train}
        if self.method:
            d["method"] = dict(self.method)
        return d


def _chunk_bounds(steps: int, every: int) -> list[int]:
    """In-task step counts at which chunks end (checkpoints), the last being ``steps``."""
    if every <= 0:
        return [steps]
    return list(range(every, steps, every)) + [steps]


def train_run(cfg: RunConfig, run_dir: str | os.PathLike, *, resume: bool = False,
              hooks: Hooks | None = None, stream: custom_streams.Stream | None = None,
              progress: bool = True, stop_after_chunks: int | None = None) -> checkpoints.Run:
    """Train ``cfg`` over its task stream and write the checkpoint series to ``run_dir``.

    Args:
      cfg: the run's configuration.
      run_dir: output folder; must not hold a run yet unless ``resume`` is set.
      resume: continue a run folder from its last checkpoint (its manifest's configuration
        must equal ``cfg``). Resuming a finished run does nothing.
      hooks: regularizer / reset plug points (:class:`Hooks`); by default those of
        ``cfg.method``.
      stream: a prebuilt stream (defaults to ``streams.make_stream(cfg.stream)``), or any
        object that follows :class:`ntkplast.custom_streams.Stream` (a user's own tasks, e.g.
        :class:`ntkplast.custom_streams.ArrayStream`); the manifest then records the stream as
        ``custom`` and analysis needs an explicit probe file.
      progress: show a progress bar (task, step, loss, online score).
      stop_after_chunks: stop (as if killed) after this many chunks — for tests of resume.

    Returns:
      The run, opened for reading.
    """
    return train_seeds(cfg, [cfg.seed], [run_dir], resume=resume, hooks=hooks, stream=stream,
                       progress=progress, stop_after_chunks=stop_after_chunks)[0]


class _Lane:
    """One run of a training: its config, folder, manifest, keys and in-task bookkeeping."""

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool, config_record: dict,
                 manifest: dict[str, Any]):
        self.cfg, self.run_dir = cfg, run_dir
        self.k_init, self.k_step, self.k_ref, self.k_task_end = jax.random.split(
            jax.random.PRNGKey(cfg.seed), 4)
        self.online = 0.0
        manifest_path = run_dir / checkpoints.MANIFEST
        if manifest_path.exists():
            if not resume:
                raise NtkplastError(f"{run_dir} already holds a run; pass --resume to continue "
                                    f"it or choose another output folder")
            self.manifest = checkpoints.read_manifest(run_dir)
            if self.manifest.get("config") != config_record:
                raise NtkplastError(f"{run_dir} was written with a different configuration; "
                                    f"resume it with the same config, or train into a new folder")
            checkpoints.remove_stale_temporaries(run_dir)  # half-written files of a killed run
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoints.remove_stale_temporaries(run_dir)  # a run killed in its first write
            self.manifest = manifest
        self.written = {c["step"]: c for c in self.manifest["checkpoints"]}

    @property
    def last(self) -> dict[str, Any] | None:
        """The last checkpoint already on disk (None for a new run)."""
        return self.manifest["checkpoints"][-1] if self.manifest["checkpoints"] else None

    def load(self, entry: Mapping[str, Any], tx: optax.GradientTransformation,
             template: models.Params) -> tuple[models.Params, Any]:
        """Parameters and optimizer state of the written checkpoint ``entry``."""
        path = self.run_dir / entry["file"]
        arrays = checkpoints.load_arrays(path)
        params = checkpoints.arrays_to_params(arrays, source=str(path))
        return params, checkpoints.arrays_to_opt_state(arrays, tx.init(template),
                                                       source=str(path))


def _online_sum(metrics: Mapping[str, Any]) -> float:
    """The task's summed online score so far, as a checkpoint recorded it (format v1 runs
    called it ``online_correct``)."""
    return metrics.get("online_score_sum", metrics.get("online_correct", 0))


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def _lane_of(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _set_lane(tree: Any, i: int, value: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, v: a.at[i].set(v), tree, value)


def train_seeds(cfg: RunConfig, seeds: Sequence[int], run_dirs: Sequence[str | os.PathLike], *,
                resume: bool = False, hooks: Hooks | None = None,
                stream: custom_streams.Stream | None = None, progress: bool = True,
                stop_after_chunks: int | None = None) -> list[checkpoints.Run]:
    """Train ``cfg`` once per seed, all seeds in one vectorised program, one folder each.

    Run k is ``cfg`` with ``seed = seeds[k]``, written to ``run_dirs[k]`` exactly as
    :func:`train_run` writes a run (same manifest, same checkpoints, same metrics). With more
    than one seed, every step is ``jax.vmap``-ed over the seeds' stacked parameters, optimizer
    states, minibatch indices and step keys (the global step is shared), so S seeds cost one
    compiled program instead of S; evaluation, reset references and ``on_task_end`` run per
    seed. A vectorised run agrees with the same seed trained alone to float rounding, not bit for
    bit (batched matrix products sum in another order); its manifest lists the seeds it was
    trained with under ``vectorised_seeds``.

    Resuming (``resume=True``) restarts every seed from the latest checkpoint that all of them
    have written; a seed that had got further takes its own written checkpoints as the others
    catch up (nothing is written twice), so an interrupted vectorised run ends with the same
    files as an uninterrupted one. Finished runs are left alone.

    Args and returns as :func:`train_run` (one opened run per seed).
    """
    seeds = [int(s) for s in seeds]
    run_dirs = [Path(d) for d in run_dirs]
    if not seeds or len(set(seeds)) != len(seeds) or len(seeds) != len(run_dirs):
        raise NtkplastError(f"seeds: expected distinct seeds, one per run folder; got {seeds} "
                            f"for {len(run_dirs)} folder(s)")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise NtkplastError("run_dirs: every seed needs its own run folder")
    stream = stream if stream is not None else streams.make_stream(cfg.stream)
    custom = custom_streams.check_stream(stream, cfg.stream, cfg.model.num_outputs,
                                         cfg.train.loss)
    objective = OBJECTIVES[cfg.train.loss]
    model = models.build(cfg.model)
    if hooks is None:
        hooks = Hooks()
        if cfg.method:
            from ntkplast.regularizers import make_hooks  # regularizers import this module

            hooks = make_hooks(cfg.method, model, stream.input_shape, cfg.train.learning_rate)
    tx = make_optimizer(cfg.train)
    if hooks.optimizer is not None:
        tx = hooks.optimizer(tx)
    refs = reference_task_set(cfg.train.reference_tasks, len(stream))

    lanes = []
    for seed, run_dir in zip(seeds, run_dirs, strict=True):
        lane_cfg = dataclasses.replace(cfg, seed=seed)
        record = lane_cfg.to_dict()
        if custom:  # the [stream] table does not describe these tasks; analysis must not use it
            record["stream"] = None
        manifest = {
            "format": checkpoints.FORMAT, "format_version": checkpoints.FORMAT_VERSION,
            "model": cfg.model.to_dict(), "input_shape": list(stream.input_shape),
            "num_classes": stream.num_classes, "num_tasks": len(stream),
            "config": record, "checkpoints": [], "tasks": [], "complete": False,
        }
        if custom:
            manifest["stream"] = {"custom": getattr(stream, "name", type(stream).__name__)}
        if len(seeds) > 1:
            manifest["vectorised_seeds"] = seeds
        lanes.append(_Lane(lane_cfg, run_dir, resume, record, manifest))
    todo = [lane for lane in lanes if not lane.manifest.get("complete")]
    if todo:
        _train_lanes(todo, stream, model, tx, hooks, objective, refs, progress,
                     stop_after_chunks)
    return [checkpoints.open_run(lane.run_dir) for lane in lanes]


def _train_lanes(lanes: Sequence[_Lane], stream: custom_streams.Stream, model: models.Model,
                 tx: optax.GradientTransformation, hooks: Hooks, objective: Objective,
                 refs: frozenset[int], progress: bool, stop_after_chunks: int | None) -> None:
    """The training loop of :func:`train_seeds` over the unfinished ``lanes``."""
    cfg = lanes[0].cfg
    vectorised = len(lanes) > 1
    trainer = make_trainer(model, tx, hooks, lanes[0].k_step, objective)
    fresh = [model.init(lane.k_init, stream.input_shape) for lane in lanes]
    # Every lane restarts at the latest position that all of them have written.
    starts = [lane.last for lane in lanes]
    start = None if any(s is None for s in starts) else min(starts, key=lambda c: c["step"])
    states = []
    for lane, params in zip(lanes, fresh, strict=True):
        if start is None:
            states.append(TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32)))
        else:
            p, o = lane.load(lane.written[start["step"]], tx, params)
            states.append(TrainState(p, o, jnp.asarray(start["step"], jnp.int32)))
    if start is None:
        task, in_task = 0, 0
        for lane, state in zip(lanes, states, strict=True):
            if lane.last is None:
                _save_checkpoint(lane.run_dir, lane.manifest, state, task=0, kind="init",
                                 metrics={"task_step": 0})
    else:
        task, in_task = start["task"], start["metrics"].get("task_step", 0)
        for lane in lanes:
            m = lane.written[start["step"]]["metrics"]
            lane.online = _online_sum(m)
        if start["kind"] == "task_end":
            task, in_task = task + 1, 0
            for lane in lanes:
                lane.online = 0.0
    if vectorised:
        state = TrainState(_stack([s.params for s in states]),
                           _stack([s.opt_state for s in states]), states[0].step)
        step_keys = jnp.stack([lane.k_step for lane in lanes])
    else:
        state = states[0]

    def lane_state(i: int) -> TrainState:
        if not vectorised:
            return state
        return TrainState(_lane_of(state.params, i), _lane_of(state.opt_state, i), state.step)

    def with_lane(i: int, p: models.Params, o: Any) -> TrainState:
        if not vectorised:
            return TrainState(p, o, state.step)
        return TrainState(_set_lane(state.params, i, p), _set_lane(state.opt_state, i, o),
                          state.step)

    per_task = cfg.train.steps_per_task
    total = per_task * len(stream) if per_task is not None else None
    bar = tqdm(total=total, initial=int(state.step), disable=not progress, unit="step",
               dynamic_ncols=True)
    chunks_done = 0
    while task < len(stream):
        data = stream[task]
        n = len(data.y_train)
        steps = cfg.train.steps_for(n)
        x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
        for stop in (b for b in _chunk_bounds(steps, cfg.train.checkpoint_every) if b > in_task):
            idx = [minibatch_indices(lane.cfg.seed, task, n, cfg.train.batch_size, in_task, stop)
                   for lane in lanes]
            if vectorised:
                state, (losses, scores) = trainer.run_chunks(state, x, y, jnp.asarray(idx),
                                                             step_keys)
            else:
                state, (losses, scores) = trainer.run_chunk(state, x, y, jnp.asarray(idx[0]))
            losses = np.asarray(losses).reshape(len(lanes), -1)
            scores = np.asarray(scores).reshape(len(lanes), -1)
            bar.update(stop - in_task)
            in_task = stop
            step = int(state.step)
            for i, lane in enumerate(lanes):
                if step in lane.written:  # got this far before: take its own checkpoint
                    entry = lane.written[step]
                    state = with_lane(i, *lane.load(entry, tx, fresh[i]))
                    lane.online = _online_sum(entry["metrics"])
                    continue
                if not np.all(np.isfinite(losses[i])):
                    bad = step - losses.shape[1] + int(np.argmin(np.isfinite(losses[i])))
                    raise NtkplastError(
                        f"training diverged at step {bad} (task {task}): the loss is not "
                        f"finite; the last finite checkpoint is "
                        f"{lane.manifest['checkpoints'][-1]['file']} in {lane.run_dir}; lower "
                        f"train.learning_rate or the regularizer strength")
                lane.online += float(np.sum(scores[i]))
                online_score = lane.online / (in_task * cfg.train.batch_size)
                metrics = {"task_step": in_task, "online_score_sum": lane.online,
                           "loss": float(np.mean(losses[i])),
                           f"online_{objective.metric}": online_score}
                if in_task < steps:
                    _save_checkpoint(lane.run_dir, lane.manifest, lane_state(i), task,
                                     "periodic", metrics)
                    continue
                record = _end_task(lane, stream, trainer, tx, lane_state(i), task, refs,
                                   online_score, data)
                if hooks.on_task_end is not None:
                    s = lane_state(i)
                    state = with_lane(i, *hooks.on_task_end(
                        s.params, s.opt_state, task, jax.random.fold_in(lane.k_task_end, task)))
                lane.manifest["tasks"].append(record)
                metrics.update({k: v for k, v in record.items() if k != "task"})
                lane.manifest["complete"] = task == len(stream) - 1
                _save_checkpoint(lane.run_dir, lane.manifest, lane_state(i), task, "task_end",
                                 metrics)
            mean_online = np.mean([ln.online for ln in lanes]) / (in_task * cfg.train.batch_size)
            bar.set_postfix(task=task, loss=f"{float(np.mean(losses)):.3f}",
                            **{objective.metric: f"{mean_online:.3f}"})
            chunks_done += 1
            if stop_after_chunks is not None and chunks_done >= stop_after_chunks:
                bar.close()
                return
        task, in_task = task + 1, 0
        for lane in lanes:
            lane.online = 0.0
    bar.close()


def _end_task(lane: _Lane, stream: custom_streams.Stream, trainer: Trainer,
              tx: optax.GradientTransformation, state: TrainState, task: int,
              refs: frozenset[int], online_score: float, data: streams.Task) -> dict[str, Any]:
    """Evaluate ``lane`` after task ``task``; run its reset reference when asked.

    Names follow the objective's score: ``test_accuracy``, ``online_accuracy``,
    ``accuracy_on_tasks`` … for classification, ``test_mse`` … for regression.
    """
    cfg = lane.cfg
    objective = OBJECTIVES[cfg.train.loss]
    m = objective.metric
    record: dict[str, Any] = {
        "task": task, "end_step": int(state.step),
        f"test_{m}": trainer.evaluate(state.params, jnp.asarray(data.x_test),
                                      jnp.asarray(data.y_test)),
        f"online_{m}": online_score,
    }
    if cfg.train.eval_previous:
        record[f"{m}_on_tasks"] = [
            trainer.evaluate(state.params, *map(jnp.asarray, stream.test_set(s)))
            for s in range(task + 1)]
    if task in refs:
        ref_test, ref_online = reference_run(cfg, trainer, tx, data, task,
                                             jax.random.fold_in(lane.k_ref, task), lane.k_step)
        gap = ref_test - record[f"test_{m}"]
        record.update({f"reference_test_{m}": ref_test, f"reference_online_{m}": ref_online,
                       "plasticity_loss": gap if objective.higher_is_better else -gap})
    return record


def reference_run(cfg: RunConfig, trainer: Trainer, tx: optax.GradientTransformation,
                  data: streams.Task, task: int, key: Array,
                  step_key: Array) -> tuple[float, float]:
    """Train a fresh network on ``data`` alone with the run's budget and minibatch order.

    ``key`` initialises the network, ``step_key`` keys its steps (the run's own step key).

    Returns (test score at the end, online score over the task): accuracies for
    classification, mean squared errors for regression.
    """
    model = models.build(cfg.model)
    params = model.init(key, data.x_train.shape[1:])
    state = TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
    n = len(data.y_train)
    steps = cfg.train.steps_for(n)
    idx = minibatch_indices(cfg.seed, task, n, cfg.train.batch_size, 0, steps)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    state, (_, scores) = trainer.run_chunk_keyed(state, x, y, jnp.asarray(idx), step_key)
    online = float(np.sum(scores)) / (steps * cfg.train.batch_size)
    test = trainer.evaluate(state.params, jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    return test, online


def _save_checkpoint(run_dir: Path, manifest: dict[str, Any], state: TrainState, task: int,
                     kind: str, metrics: Mapping[str, Any]) -> None:
    """Write the checkpoint's .npz, then the manifest that lists it (both atomically)."""
    step = int(state.step)
    name = checkpoints.checkpoint_name(step)
    arrays = checkpoints.params_to_arrays(state.params)
    arrays.update(checkpoints.opt_state_to_arrays(state.opt_state))
    checkpoints.save_arrays(run_dir / name, arrays)
    manifest["checkpoints"].append({"file": name, "step": step, "task": task, "kind": kind,
                                    "metrics": dict(metrics)})
    checkpoints.write_manifest(run_dir, manifest)
