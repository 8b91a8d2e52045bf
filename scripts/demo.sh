#!/usr/bin/env bash
# Set up .venv/ when missing, then run `ntkplast demo` (extra arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh full
exec ntkplast demo "$@"
