"""Executors: where the jobs of a grid or sweep run.

An *executor* has one method, ``map(fn, jobs)``: it calls ``fn`` on every job and returns the
results in job order. :func:`~ntkplast.experiments.grid.run_grid` and
:func:`~ntkplast.experiments.sweep.run_sweep` hand it one job per run (or per group of seeds trained
in one vectorised program); each job writes into its own run folder, so the folders, not the
returned values, are the record, and a re-run skips finished runs whichever executor ran them.

* :class:`LocalExecutor` runs the jobs one after another in this process (the default).
* :class:`RayExecutor` submits one `Ray <https://docs.ray.io>`_ task per job: on a Ray instance
  it starts on this machine, or on an existing Ray cluster (``address="auto"``, an address such
  as ``"head-node:6379"``, or the ``RAY_ADDRESS`` environment variable, as ``ray.init`` reads
  them). Ray is an optional
  extra: ``pip install 'ntkplast[ray]'``.

Requirements for the Ray executor:

* ``fn``, every job and every result must be picklable (cloudpickle); ``fn`` should be a
  module-level function of an installed package, such as :func:`ntkplast.experiments.grid.run_job`.
* On a cluster every node needs the same Python environment with ntkplast installed (the same
  versions of jax, numpy, …), and the output folder on shared storage at the same absolute
  path on every node: a task writes its run folder wherever Ray places it.

Use :func:`make_executor` to build one by name (``ntkplast sweep --executor local|ray``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from ntkplast.errors import NtkplastError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor", "EXECUTORS"]

J = TypeVar("J")
R = TypeVar("R")

EXECUTORS = ("local", "ray")
"""The names :func:`make_executor` accepts."""

_RAY_MISSING = ("the ray executor needs the ray package: pip install 'ntkplast[ray]' (or use the "
                "local executor)")


class Executor(Protocol):
    """Runs a function on a sequence of jobs."""

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        """Call ``fn(job)`` for every job; return the results in the order of ``jobs``.

        An exception raised by ``fn`` propagates to the caller unchanged (its type and message);
        whether the jobs after a failed one still run is up to the executor.
        """
        ...


class LocalExecutor:
    """Runs the jobs one after another in this process; the first exception stops the rest."""

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        """Call ``fn`` on each job in order and return the results."""
        return [fn(job) for job in jobs]

    def __repr__(self) -> str:
        return "LocalExecutor()"


class RayExecutor:
    """Runs each job as one Ray task, on this machine or across a Ray cluster.

    Ray is imported when :meth:`map` is first called, so building a ``RayExecutor`` never needs
    it. If Ray is not yet initialised in this process, :meth:`map` calls
    ``ray.init(address=address, **init_kwargs)``:

    * ``address=None``: Ray's own default — the cluster named by the ``RAY_ADDRESS`` environment
      variable if set, else the cluster last started with ``ray start`` on this machine, else a
      new Ray instance on this machine;
    * ``address="local"``: always a new Ray instance on this machine;
    * ``address="auto"``: an existing cluster (``RAY_ADDRESS``, or one started on this machine
      with ``ray start``; an error if there is none);
    * ``address="HOST:PORT"``: the cluster whose head node listens there (the GCS port, 6379 by
      default).

    A Ray that is already initialised (by the caller, or by a previous ``map``) is used as it
    is, and ``address`` and ``init_kwargs`` are then ignored. The executor never shuts Ray down:
    a Ray instance it started stays up for later ``map`` calls of this process, and Ray's own
    exit hook stops it when the process ends.

    Every job runs to its end even when another job fails (a finished run is kept and a re-run
    skips it); then the first failure in job order is re-raised in the driver as the original
    exception — an :class:`~ntkplast.errors.NtkplastError` raised in a task surfaces as an
    ``NtkplastError`` with its own message, chained to Ray's error, which carries the remote
    traceback.

    Args:
      address: the Ray cluster to join (see above); ``None`` for Ray's default. As in
        ``ray.init``, ``RAY_ADDRESS`` overrides ``None`` and ``"auto"``, not an explicit address.
      num_cpus: CPUs Ray reserves for each task (limits how many run at once on a node).
      num_gpus: GPUs Ray reserves for each task; ``1`` trains one run per GPU (a fraction
        shares a GPU: set ``XLA_PYTHON_CLIENT_MEM_FRACTION`` on the nodes to match). Ray only
        schedules by this number: with ``0``, recent Ray versions leave the node's GPUs visible
        to the task and JAX would use them, so set ``JAX_PLATFORMS=cpu`` on the nodes (before
        ``ray start``) for CPU-only runs on GPU machines.
      init_kwargs: further keyword arguments for ``ray.init`` (e.g. ``num_cpus`` for a local
        instance, or ``runtime_env``).
    """

    def __init__(self, address: str | None = None, *, num_cpus: float = 1, num_gpus: float = 0,
                 init_kwargs: Mapping[str, Any] | None = None):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise NtkplastError(f"RayExecutor: address must be None, 'local', 'auto' or the "
                                f"'HOST:PORT' of a Ray cluster's head node, got {address!r}")
        for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                raise NtkplastError(f"RayExecutor: {name} (resources per task) must be a "
                                    f"non-negative number, got {value!r}")
        init_kwargs = dict(init_kwargs or {})
        if "address" in init_kwargs:
            raise NtkplastError("RayExecutor: give the cluster address as address=..., not in "
                                "init_kwargs")
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.init_kwargs = init_kwargs

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus!r}, "
                f"num_gpus={self.num_gpus!r}, init_kwargs={self.init_kwargs!r})")

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        """Run ``fn`` on every job as a Ray task; return the results in the order of ``jobs``."""
        ray = _import_ray()
        jobs = list(jobs)
        if not jobs:
            return []
        if not ray.is_initialized():
            with warnings.catch_warnings():
                # jax warns at every fork; ray.init forks only to exec Ray's own daemons.
                warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                ray.init(address=self.address, **self.init_kwargs)
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(_call).options(
            name=getattr(fn, "__name__", "job"))
        fn_ref = ray.put(fn)  # pickled once, not once per job
        refs = [task.remote(fn_ref, job) for job in jobs]
        ray.wait(refs, num_returns=len(refs))  # let every job finish, failed or not
        results = []
        for ref in refs:
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, BaseException):
                    raise cause from e
                raise
        return results


def _call(fn: Callable[[J], R], job: J) -> R:
    # The Ray task: ray.remote takes only plain functions, fn may be any callable (a partial, a
    # builtin, an object with __call__).
    return fn(job)


def _import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as e:
        if e.name != "ray":
            raise NtkplastError(f"the ray package is installed but cannot be imported ({e}); "
                                f"reinstall it: pip install 'ntkplast[ray]'") from e
        raise NtkplastError(_RAY_MISSING) from None
    return ray


def make_executor(name: str, address: str | None = None, **options: Any) -> Executor:
    """The executor called ``name`` (``"local"`` or ``"ray"``).

    Args:
      name: ``"local"`` (:class:`LocalExecutor`) or ``"ray"`` (:class:`RayExecutor`).
      address: the Ray cluster to join (only for ``"ray"``; see :class:`RayExecutor`).
      **options: keyword arguments of :class:`RayExecutor` (``num_cpus``, ``num_gpus``,
        ``init_kwargs``); the local executor takes none.
    """
    if name == "local":
        if address is not None:
            raise NtkplastError(f"executor 'local' runs here and takes no address (got "
                                f"{address!r}); use executor 'ray' to join a Ray cluster")
        if options:
            raise NtkplastError(f"executor 'local' takes no options, got {sorted(options)}")
        return LocalExecutor()
    if name == "ray":
        unknown = sorted(set(options) - {"num_cpus", "num_gpus", "init_kwargs"})
        if unknown:
            raise NtkplastError(f"executor 'ray': unknown option(s) {unknown}; the options are "
                                f"num_cpus, num_gpus and init_kwargs")
        return RayExecutor(address, **options)
    raise NtkplastError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
