"""Executors: the local one, make_executor, and the Ray one on a local Ray instance."""

import functools
import os
import subprocess
import sys
import time

import pytest

from ntkplast.errors import NtkplastError
from ntkplast.experiments import executors

# Module-level job functions. Ray's workers cannot import this test module (tests/ is not a
# package on their sys.path), so the fixture has Ray pickle its functions by value.


def square(x):
    return x * x


def pid_of(x):
    return x, os.getpid()


def fail_on_three(x, marks=None):
    if x == 3:
        raise NtkplastError(f"job {x}: bad config, fix it")
    if marks is not None:  # leave a mark, late for the jobs after the failing one
        time.sleep(0.5 if x > 3 else 0)
        (marks / f"done{x}").touch()
    return x


# --- local -----------------------------------------------------------------------------------


def test_local_executor_keeps_job_order():
    assert executors.LocalExecutor().map(square, [3, 1, 2]) == [9, 1, 4]
    assert executors.LocalExecutor().map(square, []) == []


def test_local_executor_propagates_the_first_exception_and_stops():
    ran = []

    def job(x):
        ran.append(x)
        return fail_on_three(x)

    with pytest.raises(NtkplastError, match="job 3: bad config"):
        executors.LocalExecutor().map(job, [1, 3, 4])
    assert ran == [1, 3]


# --- make_executor ---------------------------------------------------------------------------


def test_make_executor_builds_each_kind():
    assert isinstance(executors.make_executor("local"), executors.LocalExecutor)
    ex = executors.make_executor("ray", "auto", num_cpus=2, num_gpus=0.5)
    assert isinstance(ex, executors.RayExecutor)
    assert (ex.address, ex.num_cpus, ex.num_gpus) == ("auto", 2, 0.5)


def test_make_executor_unknown_name_lists_the_choices():
    with pytest.raises(NtkplastError, match=r"unknown executor 'dask'.*local, ray"):
        executors.make_executor("dask")


def test_make_executor_refuses_options_that_do_not_apply():
    with pytest.raises(NtkplastError, match="executor 'local' .*no address"):
        executors.make_executor("local", "auto")
    with pytest.raises(NtkplastError, match=r"unknown option\(s\) \['cpus'\]"):
        executors.make_executor("ray", cpus=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_cpus=-1), "num_cpus"),
    (dict(num_gpus="one"), "num_gpus"),
    (dict(init_kwargs={"address": "auto"}), "address=..."),
])
def test_ray_executor_checks_its_arguments(kwargs, match):
    with pytest.raises(NtkplastError, match=match):
        executors.RayExecutor(**kwargs)


# --- Ray missing -----------------------------------------------------------------------------


def test_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    ex = executors.RayExecutor()  # building one does not need ray
    with pytest.raises(NtkplastError, match=r"pip install 'ntkplast\[ray\]'"):
        ex.map(square, [1, 2])


# --- Ray present: a local Ray instance -------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local(local_ray):
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield local_ray
    local_ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_ray_executor_runs_jobs_in_other_processes_in_order(ray_local):
    out = executors.RayExecutor().map(pid_of, list(range(6)))
    assert [x for x, _ in out] == list(range(6))
    assert all(pid != os.getpid() for _, pid in out)
    assert ray_local.is_initialized()  # the caller's Ray is left as it was


def test_ray_executor_reraises_a_job_error_as_itself(ray_local, tmp_path):
    with pytest.raises(NtkplastError) as info:
        executors.RayExecutor().map(functools.partial(fail_on_three, marks=tmp_path),
                                    [1, 2, 3, 4, 5])
    assert str(info.value) == "job 3: bad config, fix it"  # one line, as the CLI prints it
    assert type(info.value) is NtkplastError
    assert "fail_on_three" in str(info.value.__cause__)  # Ray's error: the remote traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done1", "done2", "done4", "done5"]
    assert executors.RayExecutor().map(square, []) == []
    assert ray_local.is_initialized()


@pytest.mark.slow
def test_ray_executor_starts_a_local_ray_and_leaves_it_running():
    pytest.importorskip("ray")
    code = ("import os, ray\n"
            "from ntkplast.experiments.executors import RayExecutor\n"
            "ex = RayExecutor('local', init_kwargs=dict(num_cpus=1, include_dashboard=False,\n"
            "                 log_to_driver=False, object_store_memory=100 * 2**20))\n"
            "print(ex.map(abs, [-2, 1, -3]), ray.is_initialized())\n"
            "print(ex.map(abs, [-4]))\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == ["[2, 1, 3] True", "[4]"]
