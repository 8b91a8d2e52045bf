// MathJax 3 for pymdownx.arithmatex (generic mode): typeset \( … \) and \[ … \], also after
// Material's instant navigation swaps a page in.
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]],
        processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"},
  svg: {fontCache: "global"},
};
if (typeof document$ !== "undefined") {
  document$.subscribe(() => { if (MathJax.typesetPromise) MathJax.typesetPromise(); });
}
