"""jaxconv.conv against PyTorch, a second reference independent of JAX: values and autograd gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import assert_close, random_array, torch_conv_reference, value_and_grads

import jaxconv

torch = pytest.importorskip("torch")

CASES = {
    "1d": dict(x_shape=(2, 3, 11), w_shape=(4, 3, 3), stride=2, padding=1, dilation=2, groups=1),
    "1d-depthwise": dict(x_shape=(3, 4, 9), w_shape=(8, 1, 4), stride=1, padding="SAME", dilation=1, groups=4),
    "2d": dict(x_shape=(2, 3, 7, 6), w_shape=(5, 3, 3, 2), stride=(2, 1), padding=(1, 0), dilation=1, groups=1),
    "2d-groups-pairs": dict(
        x_shape=(2, 4, 8, 7), w_shape=(6, 2, 3, 3), stride=(1, 2), padding=((2, 0), (-1, 1)), dilation=(1, 2), groups=2
    ),
    "2d-valid": dict(x_shape=(1, 2, 5, 5), w_shape=(3, 2, 5, 2), stride=1, padding="VALID", dilation=1, groups=1),
    "3d": dict(
        x_shape=(2, 2, 5, 6, 4), w_shape=(4, 1, 2, 3, 2), stride=(1, 2, 1), padding=1, dilation=(2, 1, 1), groups=2
    ),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_conv_matches_torch(case, bias):
    kwargs = {key: case[key] for key in ("stride", "padding", "dilation", "groups")}
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        args = [random_array(rng, case["x_shape"], jnp.float64), random_array(rng, case["w_shape"], jnp.float64)]
        if bias:
            args.append(random_array(rng, case["w_shape"][:1], jnp.float64))
        out_shape = jax.eval_shape(lambda *a: jaxconv.conv(*a, **kwargs), *args).shape
        cotangent = random_array(rng, out_shape, jnp.float64)
        out, grads = value_and_grads(lambda *a: jaxconv.conv(*a, **kwargs), args, cotangent)
        numpy_args = [np.asarray(a) for a in args]
        expected, expected_grads = torch_conv_reference(
            numpy_args[0], numpy_args[1], numpy_args[2] if bias else None, np.asarray(cotangent), **kwargs
        )
        assert_close(out, expected, jnp.float64, what="output")
        for name, grad, expected_grad in zip("xwb", grads, expected_grads):
            assert_close(grad, expected_grad, jnp.float64, what=f"dL/d{name}")
