"""Tests for jaxconv.nn: layer shapes and init, the two conv backends, argument checks (pooling: test_pool.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv import nn


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
    with pytest.raises(ValueError, match="out_channels must be >= 1"):
        nn.Conv(0, 3)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nn.Conv(4, 3, padding="bogus"), ValueError, "padding must be one of"),
        (lambda: nn.Conv(4, 3, padding=[1, None]), TypeError, "padding must be an int"),
        (lambda: nn.Conv(4, 3, stride=0), ValueError, "stride must be >= 1, got 0"),
        (lambda: nn.Conv(4, 3, dilation=(1, 0)), ValueError, "dilation must be >= 1"),
        (lambda: nn.Conv(4, "abc"), TypeError, "kernel_size must be an int"),
        (lambda: nn.Conv(4, 3.0), TypeError, "kernel_size must be an int, got float 3.0"),
        (lambda: nn.Conv(4, (3, 3), stride=(1, 1, 1)), ValueError, "Conv options disagree in rank"),
        (lambda: nn.Conv(4, (3, 3, 3, 3)), ValueError, r"one entry per spatial dim \(1, 2 or 3\)"),
    ],
)
def test_conv_options_are_checked_when_built(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_array_options_freeze_to_hashable_python_ints():
    layer = nn.Conv(4, np.array([3, 3]), stride=jnp.array([1, 2]), padding=np.array([1, 1]), dilation=np.int64(1))
    assert layer == nn.Conv(4, (3, 3), stride=(1, 2), padding=((1, 1), (1, 1)))
    assert hash(layer) == hash(nn.Conv(4, (3, 3), stride=(1, 2), padding=[[1, 1], [1, 1]]))
    assert all(type(v) is int for v in (*layer.kernel_size, *layer.stride, *sum(layer.padding, ()), layer.dilation))
    assert nn.Conv(4, 3, padding="same").padding == "SAME"
    params, out_shape = layer.init(jax.random.key(0), (2, 6, 6))
    apply = jax.jit(lambda params, x, layer: layer.apply(params, x), static_argnames="layer")
    assert out_shape == (4, 6, 3) and apply(params, jnp.ones((1, 2, 6, 6)), layer=layer).shape == (1, 4, 6, 3)


@pytest.mark.parametrize(
    "layer, in_shape, error, match",
    [
        (nn.Conv(4, 3), (0, 8, 8), ValueError, r"Conv in_shape must hold sizes >= 1, got \(0, 8, 8\)"),
        (nn.Conv(4, 3), (3, 8, 0), ValueError, "Conv in_shape must hold sizes >= 1"),
        (nn.Dense(3), (0,), ValueError, r"Dense in_shape must hold sizes >= 1, got \(0,\)"),
        (nn.Conv(4, 3), (3.0, 8, 8), TypeError, "Conv in_shape must be an int, got float 3.0"),
        (nn.Dense(3), (2.5,), TypeError, "Dense in_shape must be an int, got float 2.5"),
        (nn.Conv(4, 3), None, TypeError, "Conv in_shape must be a sequence of ints, got NoneType"),
        (nn.Flatten(), None, TypeError, "Flatten in_shape must be a sequence"),
        (nn.ReLU(), "abc", TypeError, "ReLU in_shape must be a sequence"),
        (nn.Conv(4, 5), (3, 4, 4), ValueError, r"Conv kernel of spatial shape \(5, 5\) .* larger than"),
        (nn.Conv(4, 3, stride=(1, 1, 1)), (3, 8, 8), ValueError, r"stride must have one entry per spatial dim"),
        (nn.Sequential([nn.ReLU()]), None, TypeError, "Sequential in_shape must be a sequence"),
    ],
)
def test_init_checks_in_shape_before_tracing(layer, in_shape, error, match):
    with pytest.raises(error, match=match):
        layer.init(jax.random.key(0), in_shape)


def test_apply_checks_params_and_x():
    dense = nn.Dense(3)
    params, _ = dense.init(jax.random.key(0), (5,))
    with pytest.raises(ValueError, match=r"x of shape \(2, 4\) and w of shape \(5, 3\)"):
        dense.apply(params, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"x of shape \(5,\) and w of shape \(5, 3\)"):
        dense.apply(params, jnp.ones(5))
    with pytest.raises(ValueError, match=r"Conv params must hold its weights 'w', got keys \[\]"):
        nn.Conv(4, 3).apply({}, jnp.ones((1, 2, 5, 5)))
    with pytest.raises(TypeError, match="Dense params must be the dict its init returns, got NoneType"):
        dense.apply(None, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"Flatten expects x of shape \(N, ...\) with a batch dim, got shape \(\)"):
        nn.Flatten().apply({}, jnp.float32(1))
    with pytest.raises(TypeError, match="x must be an array, got None"):
        nn.ReLU().apply({}, None)
    with pytest.raises(TypeError, match="Sequential layers must be a sequence of layers, got NoneType"):
        nn.Sequential(None)
    with pytest.raises(TypeError, match="Sequential params must be a tuple with one entry per layer, got NoneType"):
        nn.Sequential([nn.ReLU()]).apply(None, jnp.ones((2, 3)))
