"""The documentation site (mkdocs.yml): every public name has an API reference entry on the
built pages, the pages exist for every public module, and the notebook pages cover analyses/.

The site is built here without the executed notebook pages (``scripts/docs.sh build`` executes
them and builds in strict mode, where a warning fails; CI runs it)."""

import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path

import pytest

mkdocs_config = pytest.importorskip("mkdocs.config", reason="the docs packages are not installed "
                                    "(docs/requirements.txt; the full environment has them)")
from mkdocs.commands import build as mkdocs_build  # noqa: E402

import ntkplast  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# the modules whose every public function the issue names, and the rest of the package
REQUIRED = ("ntk", "spectra", "isometry", "dormancy", "analysis", "stats", "training", "data",
            "runs", "adapters", "regularizers", "figures")


def public_modules():
    """Every importable module of ntkplast whose dotted name has no private part."""
    names = []
    for info in pkgutil.walk_packages(ntkplast.__path__, "ntkplast."):
        if any(p.startswith("_") for p in info.name.split(".")[1:]):
            continue
        module = importlib.import_module(info.name)
        if module.__name__ != info.name or "_old_names" in Path(module.__file__).parts:
            continue  # a deprecated old name of a moved module
        names.append(info.name)
    return names


def public_names(module_name):
    """``__all__``, or, where a module has none, the functions and classes defined in it."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, obj in vars(module).items() if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module_name]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    config = mkdocs_config.load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site_dir),
                                       strict=False)
    config.plugins.on_startup(command="build", dirty=False)
    try:
        mkdocs_build.build(config)
    finally:
        config.plugins.on_shutdown()
    return site_dir


def anchors(site_dir, page):
    html = (site_dir / "api" / page / "index.html").read_text(encoding="utf-8")
    return set(re.findall(r'id="(ntkplast\.[\w.]+)"', html)), html


def test_every_public_module_has_an_api_page():
    pages = {p.stem for p in (ROOT / "docs" / "api").glob("*.md")} - {"index"}
    tops = {name.split(".")[1] for name in public_modules()}
    assert tops - pages == set(), "add docs/api/<module>.md and its nav entry in mkdocs.yml"
    assert set(REQUIRED) <= pages
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [p for p in pages if f"api/{p}.md" not in nav] == []


@pytest.mark.parametrize("top", REQUIRED)
def test_every_public_name_has_a_reference_entry(site, top):
    found, _ = anchors(site, top)
    modules = [m for m in public_modules() if m.split(".")[1] == top]
    missing = [f"{m}.{n}" for m in modules for n in public_names(m) if f"{m}.{n}" not in found]
    assert missing == []


def test_the_other_modules_too(site):
    missing = []
    for module in public_modules():
        top = module.split(".")[1]
        if top in REQUIRED:
            continue
        found, _ = anchors(site, top)
        missing += [f"{module}.{n}" for n in public_names(module)
                    if f"{module}.{n}" not in found]
    assert missing == []


def test_entries_carry_their_docstrings_and_cross_references(site):
    _, html = anchors(site, "spectra")
    assert "Roy &amp; Vetterli" in html and "Fort et al. 2020" in html  # formula text, citation
    # a Sphinx role in a docstring became a link to the entry it names
    assert re.search(r'<a class="autorefs[^"]*"[^>]*href="#ntkplast\.spectra\.kernel_distance"',
                     html)
    assert ":func:" not in html and ":class:" not in html


def test_every_analysis_script_has_a_notebook_page_and_a_tiny_size():
    import tomllib

    nav = (ROOT / "mkdocs.yml").read_text()
    tiny = tomllib.loads((ROOT / "analyses" / "tiny_sizes.toml").read_text())
    scripts = {p.stem for p in (ROOT / "analyses").glob("*.py")}
    assert set(tiny) == scripts
    assert [s for s in scripts if f"notebooks/{s}.md" not in nav] == []


def test_the_browser_check_passes_on_the_site_and_fails_on_a_broken_copy(site, tmp_path):
    """scripts/check_site.py in headless Chromium: the built pages render their formulas and
    figures; without MathJax and with a figure gone, it fails and says which."""
    pytest.importorskip("playwright", reason="Playwright is not installed (docs/requirements.txt)")
    import shutil
    import subprocess
    import sys

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("no Chromium (apt-get install chromium; .ci/run installs it)")

    def check(site_dir):
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_site.py"),
                               str(site_dir), "--shots", str(tmp_path / "shots")],
                              capture_output=True, text=True, timeout=300)

    good = check(site)
    assert good.returncode == 0, good.stderr
    assert "formulas typeset" in good.stdout
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    (broken / "javascripts" / "mathjax" / "tex-svg-full.js").unlink()
    (broken / "figures" / "demo_plasticity.png").unlink()
    bad = check(broken)
    assert bad.returncode == 1
    assert "formula not typeset (no MathJax output)" in bad.stderr
    assert "figures/demo_plasticity.png did not load" in bad.stderr


@pytest.mark.parametrize("docstring, warning", [
    ("See :func:`g`.", None),
    ("See :func:`missing`.", "Could not find cross-reference target 'pkg.mod.missing'"),
    ("Args:\n        a, b: two at once.", "Parameter 'a, b' does not appear"),
])
def test_a_broken_reference_or_docstring_fails_the_strict_build(tmp_path, docstring, warning):
    """The site's own settings (the Sphinx-role extension, strict mode) on a tiny package: a role
    that names nothing, or an Args entry that is no parameter, fails the build."""
    import subprocess
    import sys

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(
        f'def f(a):\n    """One.\n\n    {docstring}\n    """\n\n\n'
        'def g():\n    """Two."""\n')
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# API\n\n::: pkg.mod\n")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nplugins:\n  - autorefs\n  - mkdocstrings:\n"
        "      handlers:\n        python:\n          paths: [.]\n          options:\n"
        "            docstring_style: google\n"
        f"            extensions: [\"{ROOT / 'docs' / 'sphinx_roles.py'}:SphinxRoles\"]\n")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    if warning is None:
        assert done.returncode == 0, done.stderr
        html = (tmp_path / "site" / "index.html").read_text()
        assert 'href="#pkg.mod.g"' in html
    else:
        assert done.returncode != 0 and warning in done.stderr


def test_every_page_has_one_title(site):
    """One ``<h1>`` a page: a second one leaves Material's table of contents empty."""
    counts = {str(p.relative_to(site)): p.read_text(encoding="utf-8").count("<h1")
              for p in site.rglob("index.html")}
    assert len(counts) > 40 and {p: n for p, n in counts.items() if n != 1} == {}
