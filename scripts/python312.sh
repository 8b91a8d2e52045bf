#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (the newest jax needs it) and exit 0, or exit 1 if none:
# $NTKPLAST_PYTHON312, then python3.14 … python3.12 on PATH, then pyenv's versions.
for py in "${NTKPLAST_PYTHON312:-}" python3.14 python3.13 python3.12 \
          "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
  [ -n "$py" ] || continue
  path="$(command -v "$py" 2>/dev/null)" || continue
  if "$path" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done
exit 1
