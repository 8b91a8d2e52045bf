"""Fault injection for ``ntkplast train`` and ``ntkplast analyze``: SIGKILL at chosen moments.

Shared by ``tests/system/test_faults.py`` (a few trials) and ``benchmarks/stress.py`` (many). A kill
is aimed by polling the run folder from the parent: after the k-th checkpoint file appears
(plus a random delay), or the moment the k-th temporary file of an atomic write is seen (so the
child dies inside ``atomic_write_bytes``, between ``mkstemp`` and ``os.replace``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

TINY_CONFIG = """\
seed = 5
[model]
kind = "mlp"
widths = [16]
[stream]
kind = "permuted"
dataset = "digits"
num_tasks = 3
[train]
optimizer = "adam"
learning_rate = 3e-3
batch_size = 16
steps_per_task = 12
checkpoint_every = 4
"""
TINY_CHECKPOINTS = 10  # init + 3 tasks × 3 chunks
ANALYZE_ARGS = ["--probe-size", "24", "--metrics", "ntk,isometry,dormancy,plasticity",
                "--no-progress"]


def child_env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ntkplast", *args]


def _temporaries(folder: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(folder) if e.name.endswith(".tmp")]
    except FileNotFoundError:
        return []


def _count(folder: Path, pattern: str) -> int:
    try:
        return sum(1 for _ in folder.glob(pattern))
    except FileNotFoundError:
        return 0


def kill_during(cmd: list[str], watch: Path, pattern: str, k: int, mode: str,
                rng: random.Random, timeout: float = 120.0) -> dict:
    """Start ``cmd``; SIGKILL it at the moment chosen by ``mode`` and ``k``.

    Modes: ``"after"`` — once ``k`` files matching ``pattern`` exist in ``watch``, wait a random
    0–40 ms, then kill; ``"write"`` — kill as soon as the ``k``-th distinct temporary file
    (``*.tmp``) appears in ``watch``.

    Returns a record: whether it was killed (or finished first), the seconds it ran, and the
    temporary files present right after the kill (non-empty: it died inside a write).
    """
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    start = time.monotonic()
    seen: set[str] = set()
    try:
        while proc.poll() is None:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{cmd} ran past {timeout}s")
            if mode == "after":
                if _count(watch, pattern) >= k:
                    time.sleep(rng.uniform(0, 0.04))
                    break
                time.sleep(0.002)
            else:
                seen.update(_temporaries(watch))
                if len(seen) >= k:
                    break
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        leftovers = _temporaries(watch)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return {"killed": killed, "seconds": time.monotonic() - start, "in_write": bool(leftovers),
            "leftovers": leftovers, "returncode": proc.returncode, "stderr": err[-2000:]}


def files_bytes(run_dir: Path) -> dict[str, bytes]:
    """Every checkpoint file and the manifest, by name (temporaries excluded)."""
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())
            if p.is_file() and not p.name.endswith(".tmp")}


def bytes_differing(a: dict[str, bytes], b: dict[str, bytes]) -> int:
    """Bytes that differ between two file sets (a missing file counts in full)."""
    total = 0
    for name in set(a) | set(b):
        x, y = a.get(name, b""), b.get(name, b"")
        n = min(len(x), len(y))
        total += sum(1 for i in range(n) if x[i] != y[i]) if x[:n] != y[:n] else 0
        total += abs(len(x) - len(y))
    return total
