"""Regularizers, decoupled optimizer steps and unit resets for continual training.

The paper's isometry regularizer (coupled penalty and the decoupled AdamO step) and the
plasticity baselines it is compared with, each a small pure function whose docstring gives the
formula and the paper. They plug into :mod:`ntkplast.training` through ``training.Hooks``:

==========================  =======================================  ==============================
method                      function                                 plug point
==========================  =======================================  ==============================
isometry (coupled)          :func:`isometry_penalty`                 ``penalty``
AdamO (decoupled)           :func:`adamo` / :func:`isometry_step`    optimizer (optax chain)
                            :func:`isometry_post_update`             ``post_update``
L2                          :func:`l2_penalty`                       ``penalty``
L2 Init                     :func:`l2_init_penalty`                  ``penalty``
                            :func:`add_l2_init_gradient`             optimizer (optax chain)
shrink & perturb            :func:`shrink_perturb`                   ``post_update``
                            :func:`shrink_perturb_task_end`          ``on_task_end``
spectral regularization     :func:`spectral_penalty`                 ``penalty``
Parseval                    :func:`parseval_penalty`                 ``penalty``
SRIP                        :func:`srip_penalty`                     ``penalty``
ReDo                        :func:`redo` / :func:`redo_task_end`     ``post_step`` / ``on_task_end``
continual backprop          :func:`continual_backprop`               optimizer wrap + ``post_step``
FIRE                        :func:`fire` / :func:`fire_task_end`     ``on_task_end``
plasticity injection        :func:`plasticity_injection_task_end`    ``on_task_end``
head reset                  :func:`head_reset_task_end`              ``on_task_end``
normalize-and-project       :func:`project_to_init_norm`             optimizer (optax chain)
==========================  =======================================  ==============================

:func:`make_hooks` builds the hooks of a method named in plain data (a config's ``[method]``).
Implementations: ``penalties`` (coupled), ``decoupled`` (optimizer steps), ``resets``,
``boundary`` (task-boundary interventions), ``projection`` (NaP), ``methods`` (plain data →
hooks).
"""

from ntkplast.regularizers._common import select_layers
from ntkplast.regularizers.boundary import (
    NS_STEPS,
    fire,
    fire_task_end,
    head_reset_task_end,
    newton_schulz_polar,
    plasticity_injection_task_end,
    readout_mask,
)
from ntkplast.regularizers.decoupled import (
    IsometryStepState,
    L2InitState,
    adamo,
    add_l2_init_gradient,
    isometry_post_update,
    isometry_step,
    shrink_perturb,
    shrink_perturb_task_end,
)
from ntkplast.regularizers.methods import METHODS, check_method, make_hooks
from ntkplast.regularizers.penalties import (
    isometry_gradient,
    isometry_gradient_estimate,
    isometry_loss,
    isometry_loss_grad,
    isometry_penalty,
    isometry_target,
    l2_init_penalty,
    l2_penalty,
    parseval_penalty,
    spectral_norm,
    spectral_penalty,
    srip_penalty,
    srip_spectral_norm,
)
from ntkplast.regularizers.projection import (
    InitNormState,
    normalized_layers,
    project_to_init_norm,
)
from ntkplast.regularizers.resets import (
    CBPState,
    ContinualBackprop,
    WithState,
    cbp_init,
    cbp_step,
    continual_backprop,
    redo,
    redo_step,
    redo_task_end,
    reinitialize_units,
    reset_optimizer_state,
    unit_weight_masks,
    with_state,
)

__all__ = [
    "CBPState", "ContinualBackprop", "InitNormState", "IsometryStepState", "L2InitState",
    "METHODS", "NS_STEPS", "WithState", "add_l2_init_gradient", "adamo", "cbp_init", "cbp_step",
    "check_method", "continual_backprop", "fire", "fire_task_end", "head_reset_task_end",
    "isometry_gradient", "isometry_gradient_estimate", "isometry_loss", "isometry_loss_grad",
    "isometry_penalty", "isometry_post_update", "isometry_step", "isometry_target",
    "l2_init_penalty", "l2_penalty", "make_hooks", "newton_schulz_polar", "normalized_layers",
    "parseval_penalty", "plasticity_injection_task_end", "project_to_init_norm",
    "readout_mask", "redo", "redo_step", "redo_task_end", "reinitialize_units",
    "reset_optimizer_state", "select_layers", "shrink_perturb", "shrink_perturb_task_end",
    "spectral_norm", "spectral_penalty", "srip_penalty", "srip_spectral_norm",
    "unit_weight_masks", "with_state",
]
