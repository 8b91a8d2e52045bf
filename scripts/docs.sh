#!/usr/bin/env bash
# Usage: scripts/docs.sh build|serve|check
#   build  execute analyses/*.py as notebooks at a tiny size (docs/render_notebooks.py, into
#          docs/notebooks/), then `mkdocs build --strict` into site/: a warning (a broken
#          cross-reference, a docstring that does not render, a missing page) fails it.
#   serve  the same site at http://127.0.0.1:8000, rebuilt on every change (notebook pages are
#          executed only where missing or out of date).
#   check  open the built site in headless Chromium (scripts/check_site.py): the home page, a
#          guide and an API page must render with their formulas and figures, and every other
#          page's figures, formulas and glyphs must too.
# Uses the full environment (scripts/env.sh full), which carries docs/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh full
export JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3 NO_MKDOCS_2_WARNING=1
case "${1:-build}" in
  build)
    python docs/render_notebooks.py
    mkdocs build --strict --clean ;;
  serve)
    python docs/render_notebooks.py --reuse
    exec mkdocs serve --strict ;;
  check)
    exec python scripts/check_site.py site --every-page ;;
  *) echo "scripts/docs.sh: unknown command '$1' (use build, serve or check)" >&2; exit 2 ;;
esac
