"""A griffe extension: Sphinx cross-reference roles in ntkplast's docstrings become links.

ntkplast's docstrings name other objects the Sphinx way (``:func:`kernel_distance```,
``:class:`~ntkplast.runs.checkpoints.Run```, ``:mod:`ntkplast.stats```). mkdocstrings renders
Markdown, where those roles would show as literal text; this extension rewrites each one into a
Markdown cross-reference ``[`kernel_distance`][ntkplast.spectra.kernel_distance]`` that
mkdocs-autorefs resolves against the rendered API pages. The target is looked up the way
Sphinx's Python domain does it: a dotted name as given, else relative to the documented object's
class, its module and each enclosing package. A target that no page renders is left as a
reference all the same, so ``mkdocs build --strict`` fails on it: a broken cross-reference in a
docstring fails the documentation build.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj|exc):`(~?)([\w.]+)(\(\))?`")


def candidates(target: str, obj: griffe.Object) -> list[str]:
    """The full paths ``target`` may name from ``obj``'s docstring, nearest scope first."""
    if target.startswith("ntkplast."):
        return [target]
    scopes, parent = [], obj if obj.is_module or obj.is_class else obj.parent
    while parent is not None:
        scopes.append(parent.path)
        parent = parent.parent
    return [f"{scope}.{target}" for scope in scopes] + [target]


def resolve(target: str, obj: griffe.Object, collection: Any) -> str:
    """The first candidate path the loaded package holds, else the nearest one (which
    autorefs then reports as not found)."""
    paths = candidates(target, obj)
    for path in paths:
        try:
            collection.get_member(path)
        except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError,
                griffe.CyclicAliasError):
            continue
        return path
    return paths[0]


def link_roles(text: str, obj: griffe.Object, collection: Any) -> str:
    """``text`` with every Sphinx role replaced by a Markdown cross-reference."""
    def replace(match: re.Match) -> str:
        tilde, target, call = match.groups()
        shown = (target.rsplit(".", 1)[-1] if tilde else target) + (call or "")
        return f"[`{shown}`][{resolve(target, obj, collection)}]"

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package (see the module doc)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader,
                   **kwargs: Any) -> None:
        collection = loader.modules_collection
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = link_roles(obj.docstring.value, obj, collection)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
