"""ArchSpec.output_scale: f = c·z_L with the same parameters, in every engine and in stax."""

import jax
import numpy as np
import pytest

from ntkplast import models, ntk
from ntkplast.errors import NtkplastError


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_every_engine_scales_the_ntk_by_c_squared(kind, parameterization):
    spec = {"kind": kind, "widths": [6, 5], "num_outputs": 3, "b_std": 0.2,
            "parameterization": parameterization}
    shape = (6, 6, 2) if kind == "cnn" else (7,)
    plain, scaled = models.build(spec), models.build({**spec, "output_scale": 3.0})
    params = plain.init(jax.random.PRNGKey(0), shape)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, *shape))
    np.testing.assert_allclose(scaled.apply(params, x), 3.0 * plain.apply(params, x),
                               rtol=1e-5, atol=1e-6)
    for engine in ("layerwise", "generic"):
        k0 = np.asarray(ntk.empirical_ntk(plain, params, x, engine=engine), np.float64)
        k1 = np.asarray(ntk.empirical_ntk(scaled, params, x, engine=engine), np.float64)
        np.testing.assert_allclose(k1, 9.0 * k0, rtol=1e-4, atol=1e-4 * np.abs(k0).max())


@pytest.mark.nt
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_the_stax_kernel_scales_by_c_squared(kind):
    spec = {"kind": kind, "widths": [6, 5], "num_outputs": 3, "b_std": 0.2}
    shape = (6, 6, 2) if kind == "cnn" else (7,)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, *shape))
    i0 = np.asarray(ntk.infinite_width_ntk(models.build(spec), x), np.float64)
    i1 = np.asarray(ntk.infinite_width_ntk(models.build({**spec, "output_scale": 3.0}), x),
                    np.float64)
    np.testing.assert_allclose(i1, 9.0 * i0, rtol=1e-4, atol=1e-6 * np.abs(i0).max())


def test_the_default_is_left_out_of_the_dict_and_round_trips():
    assert "output_scale" not in models.ArchSpec().to_dict()
    spec = models.ArchSpec(output_scale=0.5)
    assert spec.to_dict()["output_scale"] == 0.5
    assert models.ArchSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), True, "2"])
def test_bad_output_scales_are_refused(bad):
    with pytest.raises(NtkplastError, match="output_scale"):
        models.ArchSpec(output_scale=bad)
