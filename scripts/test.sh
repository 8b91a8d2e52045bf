#!/usr/bin/env bash
# Usage: scripts/test.sh [full|core|newest] [pytest args...]
# Set up the environment when missing (default: full, .venv/), then run the test suite in it.
# In the core and newest environments (.venv-core/, .venv-newest/) tests marked `nt` are
# skipped. Tests run in $NTKPLAST_TEST_WORKERS parallel processes (pytest-xdist; default 2,
# 0 = in this process).
set -euo pipefail
cd "$(dirname "$0")/.."
env_name=full
case "${1:-}" in full|core|newest) env_name="$1"; shift ;; esac
source scripts/env.sh "$env_name"
export JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3
exec python -m pytest -q -n "${NTKPLAST_TEST_WORKERS:-2}" "$@"
