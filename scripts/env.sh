#!/usr/bin/env bash
# Usage: source scripts/env.sh full|core
# Creates (or refreshes, when envs/<name>.txt or pyproject.toml changed) the project environment
# .venv/ (full: pinned jax 0.4.25 + neural-tangents) or .venv-core/ (newest jax, numpy 2, no
# neural-tangents), installs ntkplast into it in editable mode, and puts it first on PATH.
# Needs only python3 with venv and pip.
set -euo pipefail
_ntk_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_ntk_name="${1:-full}"
case "$_ntk_name" in
  full) _ntk_venv="$_ntk_root/.venv" ;;
  core) _ntk_venv="$_ntk_root/.venv-core" ;;
  *) echo "scripts/env.sh: unknown environment '$_ntk_name' (use full or core)" >&2; return 2 2>/dev/null || exit 2 ;;
esac
_ntk_req="$_ntk_root/envs/$_ntk_name.txt"
_ntk_stamp_want="$(cat "$_ntk_req" "$_ntk_root/pyproject.toml" | sha256sum | cut -c1-16)"
_ntk_stamp_file="$_ntk_venv/.ntkplast-stamp"
if [ ! -x "$_ntk_venv/bin/python" ] || [ "$(cat "$_ntk_stamp_file" 2>/dev/null)" != "$_ntk_stamp_want" ]; then
  echo "[ntkplast] setting up $_ntk_venv from envs/$_ntk_name.txt (first time only; a few minutes)" >&2
  python3 -m venv "$_ntk_venv"
  # (the grep drops pip's warnings about this machine's optional local package mirrors)
  "$_ntk_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$_ntk_req" \
      2> >(grep -v "^WARNING: Location" >&2)
  "$_ntk_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      -e "$_ntk_root" 2> >(grep -v "^WARNING: Location" >&2)
  echo "$_ntk_stamp_want" > "$_ntk_stamp_file"
fi
export PATH="$_ntk_venv/bin:$PATH"
export VIRTUAL_ENV="$_ntk_venv"
