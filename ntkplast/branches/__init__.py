"""Counterfactual branches: intervene at a checkpoint and compare with the run as recorded.

Every correlation between a diagnostic and later plasticity leaves open that both follow a
third quantity. A branch separates them: from a run's checkpoint at the end of task k, the next
task(s) are trained twice — as recorded (the control, ``none``) and after one intervention
that moves one quantity (the NTK's scale, the weights' isometry, the dead units) — with the
same data order, keys and budget, so that the only difference is the intervention.

==================  ==========================================================================
module              what it holds
==================  ==========================================================================
``interventions``   the interventions (``none``, ``scale_output:c``, ``orthogonalize[:α]``,
                    ``equalize[:α]``, ``reset_dead[:τ]``): what each changes and keeps, and
                    how they parse
``branching``       :func:`branch`: branch folders (run folders) written and trained, resumable
``effects``         :func:`compare_branches`: the paired effect on the next task's plasticity
                    and the diagnostics each intervention moved
==================  ==========================================================================
"""

from ntkplast.branches.branching import (
    BRANCH_KEY,
    INTERVENTION_INPUTS,
    Branch,
    Parent,
    branch,
    branch_folder,
    find_parents,
)
from ntkplast.branches.effects import (
    DIAGNOSTICS,
    BranchComparison,
    BranchEffect,
    BranchRow,
    branch_contrast,
    compare_branches,
    read_branches,
    write_comparison,
)
from ntkplast.branches.interventions import (
    INTERVENTIONS,
    Intervened,
    Intervention,
    apply_intervention,
    interventions_of,
    parse_intervention,
)

__all__ = [
    "BRANCH_KEY", "DIAGNOSTICS", "INTERVENTIONS", "INTERVENTION_INPUTS", "Branch",
    "BranchComparison", "BranchEffect", "BranchRow", "Intervened", "Intervention", "Parent",
    "apply_intervention", "branch", "branch_contrast", "branch_folder", "compare_branches",
    "find_parents", "interventions_of", "parse_intervention", "read_branches",
    "write_comparison",
]
