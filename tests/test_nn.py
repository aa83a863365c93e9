"""Tests for jaxconv.nn: layer shapes and init, pooling against lax.reduce_window, the two conv backends."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from jaxconv import nn


def _reduce_window_pool(x, kernel, stride, padding, reduce):
    """Independent reference: lax.reduce_window, with the same fill and count_include_pad semantics."""
    dims = (1, 1, *kernel)
    strides = (1, 1, *stride)
    pads = ((0, 0), (0, 0), *padding)
    if reduce == "max":
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, pads)
    return lax.reduce_window(x, 0.0, lax.add, dims, strides, pads) / math.prod(kernel)


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


def test_max_pool_padding_never_wins():
    x = -jnp.ones((1, 1, 3, 3))  # all negative: a zero pad would be the max
    out = nn.MaxPool(2, stride=2, padding=1).apply({}, x)
    assert out.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(out, -1.0)


def test_conv_backends_agree_forward_and_backward():
    layer_im2col = nn.Conv(5, 3, stride=2, padding="SAME", groups=1, backend="im2col")
    layer_lax = nn.Conv(5, 3, stride=2, padding="SAME", groups=1, backend="lax")
    params, out_shape = layer_im2col.init(jax.random.key(0), (3, 9, 9))
    assert out_shape == (5, 5, 5)
    x = jax.random.normal(jax.random.key(1), (4, 3, 9, 9))

    def loss(params, x, layer):
        return jnp.sum(jnp.sin(layer.apply(params, x)))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    grads = [grad(params, x, layer) for layer in (layer_im2col, layer_lax)]
    np.testing.assert_allclose(layer_im2col.apply(params, x), layer_lax.apply(params, x), rtol=1e-5, atol=1e-5)
    for ours, reference in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_grouped_conv_without_bias():
    layer = nn.Conv(4, (3, 1), groups=2, use_bias=False)
    params, out_shape = layer.init(jax.random.key(0), (6, 5, 5))
    assert set(params) == {"w"} and params["w"].shape == (4, 3, 3, 1)
    assert out_shape == (4, 3, 5)
    assert layer.apply(params, jnp.ones((2, 6, 5, 5))).shape == (2, *out_shape)


def test_he_and_glorot_init_scales():
    w = nn.Conv(256, 3).init(jax.random.key(0), (64, 8, 8))[0]["w"]
    fan_in = 64 * 3 * 3
    assert abs(float(jnp.std(w)) / math.sqrt(2 / fan_in) - 1) < 0.05
    w = nn.Dense(300).init(jax.random.key(1), (500,))[0]["w"]
    limit = math.sqrt(6 / (500 + 300))
    assert float(jnp.max(jnp.abs(w))) <= limit
    assert abs(float(jnp.std(w)) / (limit / math.sqrt(3)) - 1) < 0.05  # std of U(-a, a) is a / sqrt(3)


def test_sequential_threads_shapes_and_params_work_with_optax():
    model = nn.Sequential(
        [nn.Conv(4, 3, padding=1), nn.ReLU(), nn.AvgPool(2), nn.Flatten(), nn.Dense(8, init_scheme="he"), nn.Dense(3)]
    )
    params, out_shape = model.init(jax.random.key(0), (2, 6, 6))
    assert out_shape == (3,)
    assert [sorted(p) for p in params] == [["b", "w"], [], [], [], ["b", "w"], ["b", "w"]]
    assert params[4]["w"].shape == (4 * 3 * 3, 8)
    x, y = jnp.ones((5, 2, 6, 6)), jnp.arange(5) % 3

    def loss(params):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()

    optimizer = optax.sgd(0.1)

    @jax.jit
    def step(params):
        updates, _ = optimizer.update(jax.grad(loss)(params), optimizer.init(params))
        new_params = optax.apply_updates(params, updates)
        return new_params, loss(params), loss(new_params)

    new_params, loss_before, loss_after = step(params)
    assert jax.tree.structure(new_params) == jax.tree.structure(params)
    assert float(loss_after) < float(loss_before)


def test_layers_are_hashable_static_config_for_jit():
    model = nn.cnn(channels=[4, 8])
    assert model == nn.cnn(channels=(4, 8)) and hash(model) == hash(nn.cnn(channels=(4, 8)))
    assert nn.Conv(2, [3, 3], padding=[[1, 1], [0, 0]]).padding == ((1, 1), (0, 0))
    params, _ = model.init(jax.random.key(0), (1, 8, 8))
    apply = jax.jit(lambda params, x, model: model.apply(params, x), static_argnames="model")
    assert apply(params, jnp.ones((2, 1, 8, 8)), model=model).shape == (2, 10)


def test_cnn_on_mnist_sized_images():
    model = nn.cnn(num_classes=7, backend="lax")
    params = jax.eval_shape(lambda key: model.init(key, (3, 28, 28))[0], jax.random.key(0))  # shapes only
    assert params[0]["w"].shape == (16, 3, 3, 3)
    assert params[-1]["w"].shape == (32 * 7 * 7, 7)
    assert all(layer.backend == "lax" for layer in model.layers if isinstance(layer, nn.Conv))
    assert jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((2, 3, 28, 28), jnp.float32)).shape == (2, 7)


def test_bad_configurations_raise_value_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        nn.Conv(4, 3, backend="torch")
    with pytest.raises(ValueError, match="put Flatten"):
        nn.Sequential([nn.Conv(4, 3), nn.Dense(2)]).init(jax.random.key(0), (1, 8, 8))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv(4, 3, groups=2).init(jax.random.key(0), (3, 8, 8))
    with pytest.raises(ValueError, match="reduce must be one of"):
        nn.pool(jnp.ones((1, 1, 4, 4)), 2, reduce="median")
    with pytest.raises(ValueError, match="out_channels must be >= 1"):
        nn.Conv(0, 3)
