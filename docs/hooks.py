"""MkDocs hooks of the ntkplast site (mkdocs.yml ``hooks:``).

- The repository's ``figures/*.png`` (made by the analyses scripts at full size) are served at
  ``figures/`` so that the guides, the results page and the paper notes show the same files
  the README shows, without a copy under ``docs/``.
- MathJax 3's single-file SVG build is served at ``javascripts/mathjax/tex-svg-full.js`` from
  the installed ``sphinx-mathjax-offline`` package: formulas render with no network.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
MATHJAX = "tex-svg-full.js"


def mathjax_file() -> Path:
    """The MathJax build inside the installed sphinx-mathjax-offline distribution."""
    dist = metadata.distribution("sphinx-mathjax-offline")
    for name in dist.files or ():
        if name.name == MATHJAX and "mathjax" in name.parts:
            return Path(dist.locate_file(name))
    raise FileNotFoundError(f"{MATHJAX} not found in sphinx-mathjax-offline "
                            "(pip install -r docs/requirements.txt)")


def on_files(files: Files, config) -> Files:
    """Add the figures and MathJax to the site's files."""
    site_dir, urls = config["site_dir"], config["use_directory_urls"]
    for png in sorted((ROOT / "figures").glob("*.png")):
        files.append(File(f"figures/{png.name}", str(ROOT), site_dir, urls))
    mathjax = mathjax_file()
    files.append(File.generated(config, f"javascripts/mathjax/{MATHJAX}",
                                abs_src_path=str(mathjax)))
    return files
