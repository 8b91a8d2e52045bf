"""Execute every ``analyses/*.py`` as a notebook at a tiny size and write it as a site page.

    python docs/render_notebooks.py [--only NAME ...] [--reuse]

Each script runs in a fresh Jupyter kernel (:func:`ntkplast.experiments.notebooks.execute`)
with its options in ``analyses/tiny_sizes.toml`` (:data:`TINY`; the smoke tests use the same),
in ``build/notebooks/<name>/`` (its runs and files go there), two at a time; the executed
notebook becomes ``docs/notebooks/<name>.md`` with its printed output and figures
(``docs/notebooks/<name>/cell<i>_<j>.png``). ``--reuse`` keeps a page whose script and options
are unchanged since it was written (for ``scripts/docs.sh serve``). A script that fails fails
the build: its page is not written and the exit status is 1.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "notebooks"
WORK = ROOT / "build" / "notebooks"

TINY = tomllib.loads((ROOT / "analyses" / "tiny_sizes.toml").read_text())
"""Script stem → its options at the tiny size the pages are executed at."""


def stamp(name: str) -> str:
    """What a page depends on besides the package: its script and its options."""
    script = (ROOT / "analyses" / f"{name}.py").read_bytes()
    return hashlib.sha256(script + repr(TINY[name]).encode()).hexdigest()[:16]


def is_current(name: str) -> bool:
    """Whether ``name``'s page exists and was written from its present script and options."""
    stamp_file = PAGES / f".{name}.stamp"
    return ((PAGES / f"{name}.md").exists() and stamp_file.exists()
            and stamp_file.read_text() == stamp(name))


def header(name: str) -> str:
    """The note above a page: how it was executed, and where the full-size results are."""
    command = " ".join(["python", f"analyses/{name}.py", *TINY[name]])
    return (f"!!! note \"Executed when this site was built, at a tiny size\"\n"
            f"    This page is `analyses/{name}.py` run as a notebook, as\n"
            f"    `{command}`: the output and figures below are what the code printed and\n"
            f"    drew at that size, which shows it working, not the results. The results at\n"
            f"    full size are on the [results](../results.md) page and in\n"
            f"    [the paper's claims](../paper-notes.md).\n\n")


def render(name: str) -> str:
    """Execute one script and write its page; returns the page's path."""
    from ntkplast.experiments import notebooks

    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    nb = notebooks.execute(ROOT / "analyses" / f"{name}.py", TINY[name], cwd=work, timeout=1200)
    images = PAGES / name
    shutil.rmtree(images, ignore_errors=True)
    body = notebooks.to_markdown(nb, images, image_prefix=f"{name}/")
    title, _, rest = body.partition("\n")  # the notebook's own title stays on top
    page = PAGES / f"{name}.md"
    page.write_text(f"{title}\n\n{header(name)}{rest.lstrip()}", encoding="utf-8")
    (PAGES / f".{name}.stamp").write_text(stamp(name))
    return str(page.relative_to(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(TINY))
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    scripts = {p.stem for p in (ROOT / "analyses").glob("*.py")}
    if scripts != set(TINY):
        print(f"docs/render_notebooks.py: TINY must list exactly analyses/*.py; missing "
              f"{sorted(scripts - set(TINY))}, extra {sorted(set(TINY) - scripts)}",
              file=sys.stderr)
        return 2
    names = args.only or sorted(TINY)
    if args.reuse:
        names = [n for n in names if not is_current(n)]
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for name, future in [(n, pool.submit(render, n)) for n in names]:
            try:
                print(f"[docs] {name}: {future.result()}", flush=True)
            except Exception as e:  # report every failing script, then fail
                failed += 1
                print(f"[docs] {name} failed: {type(e).__name__}: {str(e)[-2000:]}",
                      file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
