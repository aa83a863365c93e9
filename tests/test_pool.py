"""Tests for jaxconv._pool (as jaxconv.nn.pool, MaxPool, AvgPool): against lax.reduce_window, every dtype, checks."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxconv import nn


def _reduce_window_pool(x, kernel, stride, padding, reduce):
    """Independent reference: lax.reduce_window, with the same fill and count_include_pad semantics."""
    dims = (1, 1, *kernel)
    strides = (1, 1, *stride)
    pads = ((0, 0), (0, 0), *padding)
    if reduce == "max":
        if jnp.issubdtype(x.dtype, jnp.floating):
            return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, pads)
        lowest = np.iinfo(x.dtype).min if jnp.issubdtype(x.dtype, jnp.integer) else False  # max's identity
        return lax.reduce_window(x, x.dtype.type(lowest), lax.max, dims, strides, pads)
    total = lax.reduce_window(x.astype(jnp.float32), 0.0, lax.add, dims, strides, pads)
    return total / math.prod(kernel)


@pytest.mark.parametrize(
    "shape, kernel, stride, padding",
    [
        ((2, 3, 8, 8), (2, 2), (2, 2), ((0, 0), (0, 0))),
        ((2, 3, 7, 9), (3, 2), (2, 1), ((1, 1), (0, 1))),
        ((1, 2, 10), (3,), (3,), ((2, 0),)),
        ((1, 2, 4, 5, 6), (2, 2, 3), (1, 2, 3), ((0, 0), (1, 0), (0, 0))),
    ],
)
def test_pool_matches_reduce_window_forward_and_grad(shape, kernel, stride, padding):
    x = jax.random.normal(jax.random.key(0), shape)

    def value_and_grad(fn, x, cotangent):
        out, vjp = jax.vjp(fn, x)
        return out, vjp(cotangent)[0]

    @jax.jit
    def compare(x):
        results = {}
        for reduce in ("max", "mean"):
            ours = functools.partial(nn.pool, kernel_size=kernel, stride=stride, padding=padding, reduce=reduce)
            reference = functools.partial(
                _reduce_window_pool, kernel=kernel, stride=stride, padding=padding, reduce=reduce
            )
            cotangent = jax.random.normal(jax.random.key(1), reference(x).shape)
            results[reduce] = (value_and_grad(ours, x, cotangent), value_and_grad(reference, x, cotangent))
        return results

    for (out, grad), (out_reference, grad_reference) in compare(x).values():
        np.testing.assert_allclose(out, out_reference, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad, grad_reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool", "float32"])
@pytest.mark.parametrize("padding", [((0, 0), (0, 0)), ((1, 1), (0, 1))])
def test_pool_of_every_dtype_matches_reduce_window(dtype, padding):
    values = jax.random.randint(jax.random.key(0), (2, 3, 7, 6), -100, 100)
    x = (values > 0) if dtype == "bool" else (values + 100 if dtype == "uint8" else values).astype(dtype)
    kernel, stride = (3, 2), (2, 2)
    for layer in (nn.MaxPool(kernel, stride=stride, padding=padding), nn.AvgPool(kernel, stride, padding)):
        out = layer.apply({}, x)
        reference = _reduce_window_pool(x, kernel, stride, padding, layer.reduce)
        assert out.dtype == (x.dtype if layer.reduce == "max" else jnp.float32)
        assert out.shape == (2, *layer.init(None, x.shape[1:])[1])
        np.testing.assert_allclose(out, reference, rtol=1e-6)


def test_max_pool_padding_never_wins():
    x = -jnp.ones((1, 1, 3, 3))  # all negative: a zero pad would be the max
    out = nn.MaxPool(2, stride=2, padding=1).apply({}, x)
    assert out.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(out, -1.0)
    x = jnp.full((1, 1, 3, 3), jnp.iinfo(jnp.int32).min, jnp.int32)  # the fill itself: still the max
    np.testing.assert_array_equal(nn.pool(x, 2, padding=1), jnp.iinfo(jnp.int32).min)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (None, TypeError, "x must be an array, got None"),
        ("abc", TypeError, "x must be an array, got 'abc'"),
        ([[[[1.0, 2.0], [3.0]]]], TypeError, "x must be a rectangular array of numbers, got a ragged list"),
        (np.ones((2, 2)), ValueError, r"x must have shape \(N, C, \*spatial\)"),
    ],
)
def test_pool_refuses_what_is_not_an_image_batch(x, error, match):
    with pytest.raises(error, match=match):
        nn.pool(x, 2)


def test_pool_checks_its_options():
    with pytest.raises(ValueError, match="reduce must be one of"):
        nn.pool(jnp.ones((1, 1, 4, 4)), 2, reduce="median")
    with pytest.raises(ValueError, match=r"pooling window of spatial shape \(5, 5\)"):
        nn.pool(jnp.ones((1, 1, 4, 4)), 5)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nn.MaxPool(0), ValueError, "kernel_size must be >= 1, got 0"),
        (lambda: nn.MaxPool(2, padding="bogus"), ValueError, "padding must be one of"),
        (lambda: nn.AvgPool(2, stride=(1, 0)), ValueError, "stride must be >= 1"),
        (lambda: nn.AvgPool(2, stride=2.0), TypeError, "stride must be an int, got float"),
        (lambda: nn.MaxPool((2, 2), stride=(1, 1, 1)), ValueError, "MaxPool options disagree in rank"),
    ],
)
def test_pool_layers_check_options_when_built(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_pool_layers_are_hashable_with_array_options():
    layer = nn.MaxPool(np.array([2, 2]), stride=np.int64(1), padding=np.array([[1, 0], [0, 1]]))
    assert layer == nn.MaxPool((2, 2), stride=1, padding=((1, 0), (0, 1)))
    assert hash(layer) == hash(nn.MaxPool([2, 2], stride=1, padding=[[1, 0], [0, 1]]))
    assert nn.AvgPool(2).stride is None
    assert layer.init(jax.random.key(0), (3, 4, 4)) == ({}, (3, 4, 4))


@pytest.mark.parametrize(
    "in_shape, error, match",
    [
        (None, TypeError, "MaxPool in_shape must be a sequence of ints, got NoneType"),
        ((0, 4, 4), ValueError, r"MaxPool in_shape must hold sizes >= 1, got \(0, 4, 4\)"),
        ((3, 4.0, 4), TypeError, "MaxPool in_shape must be an int, got float 4.0"),
        ((3,), ValueError, "MaxPool expects per-example inputs"),
        ((3, 1, 1), ValueError, r"pooling window of spatial shape \(2, 2\)"),
    ],
)
def test_pool_layer_init_checks_in_shape(in_shape, error, match):
    with pytest.raises(error, match=match):
        nn.MaxPool(2).init(jax.random.key(0), in_shape)
