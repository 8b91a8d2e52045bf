#!/usr/bin/env bash
# Usage: source scripts/env.sh full|core|newest
# Creates (or refreshes, when envs/<name>.txt or pyproject.toml changed) the project environment
# .venv/ (full: pinned jax 0.4.25 + neural-tangents), .venv-core/ (jax 0.10.2, numpy 2, no
# neural-tangents) or .venv-newest/ (Python >= 3.12: jax 0.12, numpy 2.5; found by
# scripts/python312.sh), installs ntkplast into it in editable mode, and puts it first on PATH.
# Needs only python3 with venv and pip (and, for newest, a Python >= 3.12).
set -euo pipefail
_ntk_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_ntk_name="${1:-full}"
case "$_ntk_name" in
  full) _ntk_venv="$_ntk_root/.venv" ;;
  core) _ntk_venv="$_ntk_root/.venv-core" ;;
  newest) _ntk_venv="$_ntk_root/.venv-newest" ;;
  *) echo "scripts/env.sh: unknown environment '$_ntk_name' (use full, core or newest)" >&2; return 2 2>/dev/null || exit 2 ;;
esac
_ntk_python=python3
if [ "$_ntk_name" = newest ]; then
  _ntk_python="$("$_ntk_root/scripts/python312.sh")" || {
    echo "scripts/env.sh: the newest environment needs Python >= 3.12 (none found; set NTKPLAST_PYTHON312)" >&2
    return 2 2>/dev/null || exit 2; }
fi
_ntk_req="$_ntk_root/envs/$_ntk_name.txt"
_ntk_stamp_want="$(cat "$_ntk_req" "$_ntk_root/pyproject.toml" "$_ntk_root/docs/requirements.txt" \
    | sha256sum | cut -c1-16)"
_ntk_stamp_file="$_ntk_venv/.ntkplast-stamp"
if [ ! -x "$_ntk_venv/bin/python" ] || [ "$(cat "$_ntk_stamp_file" 2>/dev/null)" != "$_ntk_stamp_want" ]; then
  echo "[ntkplast] setting up $_ntk_venv from envs/$_ntk_name.txt (first time only; a few minutes)" >&2
  "$_ntk_python" -m venv "$_ntk_venv"
  # (the grep drops pip's warnings about this machine's optional local package mirrors)
  "$_ntk_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$_ntk_req" \
      2> >(grep -v "^WARNING: Location" >&2)
  "$_ntk_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      -e "$_ntk_root" 2> >(grep -v "^WARNING: Location" >&2)
  echo "$_ntk_stamp_want" > "$_ntk_stamp_file"
fi
export PATH="$_ntk_venv/bin:$PATH"
export VIRTUAL_ENV="$_ntk_venv"
