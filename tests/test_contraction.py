"""The multiply-reduce contraction (depthwise and small groups) against lax, and the strategy choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconv
from jaxconv._contraction import contraction_for


def _normal(shape, seed=0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("dilation", [(1, 1), (2, 3)])
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", ((1, 0), (-1, 2))])
def test_depthwise_multiply_reduce_matches_lax(stride, dilation, multiplier, padding):
    channels = 4
    lhs = _normal((2, 9, 8, channels))
    rhs = _normal((3, 3, 1, channels * multiplier), seed=1)
    kwargs = dict(rhs_dilation=dilation, feature_group_count=channels, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    call = lambda conv: lambda a, b: conv(a, b, stride, padding, **kwargs)
    assert jaxconv.conv_strategy(
        (2, channels, 9, 8), (channels * multiplier, 1, 3, 3), stride=stride, padding=padding, dilation=dilation,
        groups=channels,
    ) == "multiply_reduce"  # fmt: skip
    out, ref = call(jaxconv.conv_general_dilated)(lhs, rhs), call(lax.conv_general_dilated)(lhs, rhs)
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5)
    cotangent = _normal(ref.shape, seed=2)
    grad = lambda f: jax.grad(lambda a, b: jnp.vdot(f(a, b), cotangent), (0, 1))
    for got, want in zip(
        grad(call(jaxconv.conv_general_dilated))(lhs, rhs), grad(call(lax.conv_general_dilated))(lhs, rhs)
    ):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    jaxpr = str(jax.make_jaxpr(grad(call(jaxconv.conv_general_dilated)))(lhs, rhs))
    assert "conv_general_dilated" not in jaxpr and "gather" not in jaxpr  # phi read by slices, never gathered


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.complex64])
def test_depthwise_multiply_reduce_dtypes(dtype):
    x, w = _normal((2, 3, 7, 7)).astype(dtype), _normal((3, 1, 3, 3), seed=1).astype(dtype)
    out = jaxconv.conv2d(x, w, padding=1, groups=3)
    wide = jnp.float32 if dtype == jnp.bfloat16 else dtype  # the reference in a wider type where one exists
    ref = lax.conv_general_dilated(x.astype(wide), w.astype(wide), (1, 1), ((1, 1), (1, 1)), feature_group_count=3)
    assert out.dtype == dtype
    tol = 1e-2 if dtype == jnp.bfloat16 else 1e-5
    np.testing.assert_allclose(np.asarray(out.astype(ref.dtype)), np.asarray(ref), rtol=tol, atol=tol)


def test_multiply_reduce_under_vmap_and_grad_of_grad():
    x, w = _normal((3, 2, 4, 6, 6)), _normal((4, 1, 3, 3), seed=1)
    conv = lambda f: lambda x, w: f(x, w, (1, 1), "SAME", feature_group_count=4)
    vmapped = lambda f: jax.vmap(conv(f), in_axes=(0, None))
    np.testing.assert_allclose(
        vmapped(jaxconv.conv_general_dilated)(x, w), vmapped(lax.conv_general_dilated)(x, w), rtol=2e-5, atol=2e-5
    )
    hess = lambda f: jax.grad(lambda w: jnp.sum(jax.grad(lambda w: jnp.sum(conv(f)(x[0], w) ** 2))(w) ** 2))(w)
    np.testing.assert_allclose(hess(jaxconv.conv_general_dilated), hess(lax.conv_general_dilated), rtol=1e-4)


def test_strategy_choice():
    assert contraction_for("cpu", jnp.float32, 1, 1) == "multiply_reduce"  # depthwise
    assert contraction_for("cpu", jnp.float32, 1, 2) == "multiply_reduce"  # channel multiplier 2
    assert contraction_for("cpu", jnp.float32, 4, 4) == "gemm"  # 32 groups of 128 channels: measured slower
    assert contraction_for("cpu", jnp.float32, 0, 4) == "gemm"  # empty groups: the GEMM path handles zero sizes
    assert contraction_for("cpu", jnp.complex64, 1, 1) == "gemm"
    assert contraction_for("gpu", jnp.int16, 64, 64) == "multiply_reduce"  # cuBLAS has no int16 GEMM
    assert jaxconv.conv_strategy((1, 8, 5, 5), (8, 8, 3, 3)) == "gemm"
    with pytest.raises(ValueError, match="differ in rank"):
        jaxconv.conv_strategy((1, 8, 5, 5), (8, 8, 3))
