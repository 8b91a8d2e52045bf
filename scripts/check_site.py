"""Open the built site in headless Chromium and check that pages render with their formulas
and figures.

    python scripts/check_site.py [SITE_DIR] [--chromium PATH] [--shots DIR]

Serves ``SITE_DIR`` (default ``site/``, made by ``bash scripts/docs.sh build``) on localhost and
drives Debian's Chromium (``apt-get install chromium``; ``--chromium`` or ``$CHROMIUM`` for
another) through Playwright (pinned in ``docs/requirements.txt``; it downloads no browser of its
own). On each page it checks:

- every figure in the article loaded (an ``<img>`` with a decoded, non-empty bitmap);
- every formula typeset: each ``\\( … \\)`` / ``\\[ … \\]`` (``.arithmatex``) holds MathJax's
  output and no TeX error;
- no character of the article's text is drawn as the font's missing-glyph box (the Greek and
  mathematical symbols of the docstrings' formulas);
- no request left localhost and none failed, and the page logged no error;
- page-specific content: the home page's demo figure, the diagnostics guide's display formulas,
  the spectra API page's entries with their formulas and cross-reference links.

``--every-page`` applies the first four checks to every other page of the site too. Screenshots
go to ``--shots`` (default ``build/site-check/``). Exit status 0 when every check
passes, 1 with one line per failure otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A character is "tofu" when it draws the same pixels as a private-use code point, which no
# font on the page has: both then show the missing-glyph box.
TOFU_JS = """(chars) => {
  const font = getComputedStyle(document.querySelector("article")).font;
  const draw = (c) => {
    const canvas = document.createElement("canvas"); canvas.width = 64; canvas.height = 64;
    const ctx = canvas.getContext("2d"); ctx.font = font; ctx.textBaseline = "top";
    ctx.fillText(c, 4, 4); return ctx.getImageData(0, 0, 64, 64).data.join(",");
  };
  const missing = draw("\\uE000");
  return chars.filter((c) => draw(c) === missing);
}"""

PAGE_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const article = document.querySelector("article");
  const images = [...article.querySelectorAll("img")].map((img) => ({
    src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0}));
  const formulas = [...article.querySelectorAll(".arithmatex")].map((el) => ({
    tex: el.textContent.slice(0, 60), display: el.tagName === "DIV",
    typeset: el.querySelector("mjx-container svg") !== null,
    error: el.querySelector("[data-mjx-error], mjx-merror") !== null}));
  const text = article.innerText;
  return {images, formulas, text,
          headings: article.querySelectorAll(".doc-heading").length,
          autorefs: article.querySelectorAll("a.autorefs").length};
}"""


def check_page(page, base: str, path: str, shots: Path) -> tuple[list[str], dict]:
    """Load one page and return its failures and what it found."""
    failures, errors = [], []
    page.on("pageerror", lambda e: errors.append(f"script error: {e}"))
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.goto(base + path, wait_until="load")
    found = page.evaluate(PAGE_JS)
    name = path.strip("/").replace("/", "_") or "home"
    page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
    for img in found["images"]:
        if not img["ok"]:
            failures.append(f"{path}: figure {img['src']} did not load")
    for f in found["formulas"]:
        if not f["typeset"] or f["error"]:
            why = "TeX error" if f["error"] else "no MathJax output"
            failures.append(f"{path}: formula not typeset ({why}): {f['tex']!r}")
    chars = sorted({c for c in found["text"] if ord(c) > 0x7F and not c.isspace()})
    tofu = page.evaluate(TOFU_JS, chars)
    if tofu:
        failures.append(f"{path}: drawn as missing-glyph boxes: {''.join(tofu)}")
    failures += [f"{path}: {e}" for e in errors]
    return failures, found


NAMED = ("", "guides/diagnostics/", "api/spectra/")  # the pages with content checks of their own


def pages_to_check(site: Path, every_page: bool) -> list[str]:
    """The named pages first, then (``every_page``) every other page of the site."""
    if not every_page:
        return list(NAMED)
    others = sorted(p.parent.relative_to(site).as_posix() + "/"
                    for p in site.rglob("index.html") if p.parent != site)
    return list(NAMED) + [p for p in others if p not in NAMED]


def expect(failures: list[str], condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", default=str(ROOT / "site"))
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM")
                        or shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--shots", default=str(ROOT / "build" / "site-check"))
    parser.add_argument("--every-page", action="store_true",
                        help="also check every other page's figures, formulas and glyphs")
    args = parser.parse_args(argv)
    site = Path(args.site)
    if not (site / "index.html").is_file():
        print(f"check_site: {site}/index.html not found: build the site first "
              "(bash scripts/docs.sh build)", file=sys.stderr)
        return 2
    if not args.chromium or not Path(args.chromium).exists():
        print("check_site: no Chromium found: install Debian's (apt-get install chromium) or "
              "pass --chromium PATH", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check_site: Playwright is not installed: pip install -r "
              "docs/requirements.txt", file=sys.stderr)
        return 2
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    server, base = serve(site)
    failures, outside = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def only_local(route):
                if route.request.url.startswith(base):
                    return route.continue_()
                outside.append(route.request.url)
                return route.abort()

            context.route("**/*", only_local)
            context.on("requestfailed", lambda r: failures.append(
                f"request failed: {r.url} ({r.failure})") if r.url.startswith(base) else None)
            context.on("response", lambda r: failures.append(
                f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            results = {}
            for path in pages_to_check(site, args.every_page):
                page = context.new_page()
                page_failures, results[path] = check_page(page, base, path, shots)
                failures += page_failures
                page.close()
            browser.close()
    finally:
        server.shutdown()
    home, guide, api = results[""], results["guides/diagnostics/"], results["api/spectra/"]
    expect(failures, any(i["src"].endswith("demo_plasticity.png") for i in home["images"]),
           "home: the demo's figure (figures/demo_plasticity.png) is not on the page")
    expect(failures, sum(f["display"] for f in guide["formulas"]) >= 3,
           "guides/diagnostics: fewer than 3 display formulas")
    expect(failures, len(guide["images"]) >= 1, "guides/diagnostics: no figure")
    expect(failures, api["headings"] >= 15, f"api/spectra: {api['headings']} entries (< 15)")
    expect(failures, api["autorefs"] >= 5, "api/spectra: docstring cross-references not linked")
    for formula in ("exp(H(p))", "λ_max", "‖K1‖_F"):
        expect(failures, formula in api["text"], f"api/spectra: formula {formula!r} not shown")
    failures += [f"request left localhost: {url}" for url in sorted(set(outside))]
    for path, found in results.items():
        if path not in NAMED:
            continue
        print(f"[site] /{path}: {len(found['images'])} figures, {len(found['formulas'])} "
              f"formulas typeset, {found['headings']} API entries, {found['autorefs']} "
              "cross-reference links")
    print(f"[site] {len(results)} pages checked; screenshots in {shots}")
    for failure in failures:
        print(f"[site] FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
