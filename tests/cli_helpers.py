"""Running the ``ntkplast`` command line in tests, and checking its one-line errors."""

import os
import subprocess
import sys


def run_cli(*args, cwd, timeout=300):
    """``python -m ntkplast ARGS`` in ``cwd`` on the CPU; the completed process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "ntkplast", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    """Exit status 2, one ``ntkplast: error:`` line holding every fragment, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkplast: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
