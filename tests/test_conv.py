"""Tests for jaxconv.conv (jaxconv._conv): values and gradients against lax, and how it composes with JAX."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import (
    FLOAT_DTYPES,
    NOTE_BACKWARD,
    TOLERANCES,
    assert_close,
    conv_cases,
    conv_kwargs,
    default_precision_tolerance,
    lax_conv_reference,
    lowered_ops,
    make_inputs,
    needs_x64,
    on_cpu,
    primitive_names,
    random_array,
    reference_dtype,
    value_and_grads,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

import jaxconv
from jaxconv._api import conv_spec
from jaxconv._custom_vjp import conv_vjp


def _x64(dtype):
    return jax.enable_x64(True) if needs_x64(dtype) else contextlib.nullcontext()


def _check_against_lax(args, kwargs, rng, dtype, conv_fn=jaxconv.conv):
    """Our values and grads (x, w, b) vs lax's at HIGHEST, computed in reference_dtype(dtype)."""
    cotangent = random_array(rng, jax.eval_shape(lambda *a: conv_fn(*a, **kwargs), *args).shape, dtype)
    out, grads = value_and_grads(lambda *a: conv_fn(*a, **kwargs), args, cotangent)
    high = reference_dtype(dtype)
    ref_args = on_cpu(*[a.astype(high) for a in args])
    expected, expected_grads = value_and_grads(
        lambda *a: lax_conv_reference(*a, **kwargs), ref_args, *on_cpu(cotangent.astype(high))
    )
    assert out.dtype == jnp.dtype(dtype)
    assert_close(out, expected, dtype, what="output")
    for name, grad, arg, expected_grad in zip("xwb", grads, args, expected_grads):
        assert grad.dtype == arg.dtype, name
        assert_close(grad, expected_grad, dtype, what=f"dL/d{name}")


# --- values and gradients vs lax ---------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_conv_matches_lax(case, seed):
    """Any shape, stride, padding (ints, negative pairs, strings), dilation, groups, bias; 1-3 spatial dims."""
    args, rng = make_inputs(case, "float32", seed)
    _check_against_lax(args, conv_kwargs(case), rng, "float32")


FIXED_CASES = {
    "1d-strided-dilated": dict(
        x_shape=(2, 3, 9), w_shape=(4, 3, 3), stride=2, padding=2, dilation=2, groups=1, bias=True
    ),
    "2d-grouped-same": dict(
        x_shape=(2, 4, 6, 7), w_shape=(6, 2, 3, 2), stride=(1, 2), padding="SAME", dilation=1, groups=2, bias=True
    ),
    "3d-negative-pads": dict(
        x_shape=(1, 2, 5, 4, 6),
        w_shape=(3, 2, 2, 3, 2),
        stride=(2, 1, 1),
        padding=((1, 0), (-1, 2), (0, -1)),
        dilation=(1, 1, 2),
        groups=1,
        bias=False,
    ),
}


@pytest.mark.parametrize("case", list(FIXED_CASES.values()), ids=list(FIXED_CASES))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_conv_matches_lax_per_dtype(case, dtype):
    with _x64(dtype):
        args, rng = make_inputs(case, dtype, seed=0)
        _check_against_lax(args, conv_kwargs(case), rng, dtype)


def _custom_vjp_conv(x, w, b=None, **kwargs):
    """The conv through ``jax.custom_vjp`` (``jaxconv._custom_vjp.conv_vjp``): reverse mode only."""
    return conv_vjp(x, w, b, conv_spec(x, w, b, **kwargs))


@pytest.mark.parametrize("case", list(FIXED_CASES.values()), ids=list(FIXED_CASES))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_custom_vjp_conv_matches_lax(case, dtype):
    """The custom_vjp registration stays beside the primitives, on the same formulas, and agrees with lax's grad."""
    args, rng = make_inputs(case, dtype, seed=0)
    _check_against_lax(args, conv_kwargs(case), rng, dtype, conv_fn=_custom_vjp_conv)


def test_tolerance_table_covers_every_dtype():
    assert set(TOLERANCES) == set(FLOAT_DTYPES)


def test_conv_hand_computed():
    # One 2x2 image, one 2x2 filter, padding 1: cross-correlation, each output a partial dot product,
    # e.g. the top-left window [[0, 0], [0, 1]] meets only the tap 1000, the centre one all four.
    x = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = jnp.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    expected = [[1000.0, 2100.0, 200.0], [3010.0, 4321.0, 402.0], [30.0, 43.0, 4.0]]
    np.testing.assert_array_equal(np.asarray(jaxconv.conv(x, w, padding=1))[0, 0], expected)
    # dL/dw for L = sum(out): every filter tap sees the sum of the pixels it slides over.
    dw = jax.grad(lambda w: jaxconv.conv(x, w, padding=1).sum())(w)
    np.testing.assert_array_equal(np.asarray(dw)[0, 0], [[10.0, 10.0], [10.0, 10.0]])


@pytest.mark.parametrize(
    "conv_nd, x_shape, w_shape",
    [
        (jaxconv.conv1d, (2, 3, 8), (4, 3, 3)),
        (jaxconv.conv2d, (2, 3, 6, 5), (4, 3, 3, 2)),
        (jaxconv.conv3d, (1, 2, 4, 5, 3), (3, 2, 2, 3, 2)),
    ],
    ids=["conv1d", "conv2d", "conv3d"],
)
def test_conv_nd_match_lax(conv_nd, x_shape, w_shape):
    rng = np.random.default_rng(0)
    x, w, b = random_array(rng, x_shape), random_array(rng, w_shape), random_array(rng, w_shape[:1])
    assert_close(conv_nd(x, w, b, stride=2, padding=1), lax_conv_reference(x, w, b, stride=2, padding=1))


def test_check_grads_second_order_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x, w, b = random_array(rng, (2, 4, 5, 4), "float64"), random_array(rng, (4, 2, 3, 2), "float64"), None
        b = random_array(rng, (4,), "float64")
        f = jax.jit(lambda x, w, b: jnp.tanh(jaxconv.conv(x, w, b, stride=(2, 1), padding=((1, 0), (1, -1)), groups=2)))
        check_grads(f, (x, w, b), order=2, modes=["rev"])
        x1, w1 = random_array(rng, (1, 2, 7), "float64"), random_array(rng, (3, 2, 3), "float64")
        check_grads(jax.jit(lambda x, w: jaxconv.conv(x, w, dilation=2, padding="SAME")), (x1, w1), 2, modes=["rev"])


@pytest.mark.parametrize("method", ["pad_add", "scatter_add"])
def test_col2im_methods_give_the_same_gradients(method):
    case = FIXED_CASES["2d-grouped-same"] | dict(stride=(2, 3), dilation=(2, 1))
    args, rng = make_inputs(case, "float32", seed=1)
    kwargs = conv_kwargs(case)
    cotangent = random_array(rng, lax_conv_reference(*args, **kwargs).shape)
    _, grads = value_and_grads(lambda *a: jaxconv.conv(*a, **kwargs, col2im_method=method), args, cotangent)
    _, expected = value_and_grads(lambda *a: lax_conv_reference(*a, **kwargs), args, cotangent)
    for grad, expected_grad in zip(grads, expected):
        assert_close(grad, expected_grad)


@pytest.mark.parametrize("max_cols_bytes", [1, 3 * 40 * 27 * 4], ids=["one-image-chunks", "chunks-with-remainder"])
def test_batch_chunks_give_identical_results(max_cols_bytes):
    # phi(I) of one (3, 5, 8) image with a 3x3 kernel, padding 1: 40 windows x 27 columns x 4 bytes.
    rng = np.random.default_rng(2)
    x, w, b = random_array(rng, (7, 3, 5, 8)), random_array(rng, (4, 3, 3, 3)), random_array(rng, (4,))
    cotangent = random_array(rng, (7, 4, 5, 8))
    whole = value_and_grads(lambda *a: jaxconv.conv(*a, padding=1, max_cols_bytes=None), (x, w, b), cotangent)
    chunked = value_and_grads(
        lambda *a: jaxconv.conv(*a, padding=1, max_cols_bytes=max_cols_bytes), (x, w, b), cotangent
    )
    for actual, expected in zip(jax.tree.leaves(chunked), jax.tree.leaves(whole)):
        assert_close(actual, expected)
    if max_cols_bytes == 1:  # one loop over the chunks, in the forward and in each transpose
        grad = jax.grad(lambda x: jaxconv.conv(x, w, padding=1, max_cols_bytes=1).sum())
        assert " while(" in jax.jit(grad).lower(x).compile().as_text()


def test_cols_budget_counts_the_accumulation_dtype():
    """The backward holds phi cast to preferred_element_type: a bf16 conv accumulating in f32 budgets 4 bytes."""
    from jaxconv._api import conv_spec
    from jaxconv._conv import chunk_size

    x, w = jnp.ones((4, 2, 6, 6), jnp.bfloat16), jnp.ones((3, 2, 3, 3), jnp.bfloat16)
    phi_f32_per_image = 16 * 2 * 9 * 4
    options = dict(stride=1, padding=0, dilation=1, groups=1, max_cols_bytes=2 * phi_f32_per_image)
    assert chunk_size(conv_spec(x, w, None, **options), x.shape, x.dtype) is None  # bf16: all 4 images fit
    spec = conv_spec(x, w, None, preferred_element_type=jnp.float32, **options)
    assert chunk_size(spec, x.shape, x.dtype) == 2


def test_preferred_element_type():
    rng = np.random.default_rng(3)
    x, w, b = (random_array(rng, s, jnp.bfloat16) for s in ((2, 3, 6, 6), (4, 3, 3, 3), (4,)))
    f = lambda x, w, b: jaxconv.conv(x, w, b, padding=1, preferred_element_type=jnp.float32)
    out = f(x, w, b)
    assert out.dtype == jnp.float32
    expected = lax_conv_reference(x.astype(jnp.float32), w.astype(jnp.float32), b.astype(jnp.float32), padding=1)
    assert_close(out, expected, jnp.float32, scale=10.0)  # only the final rounding of b differs
    grads = jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2))(x, w, b)
    assert [g.dtype for g in grads] == [jnp.bfloat16] * 3
    assert [g.shape for g in grads] == [x.shape, w.shape, b.shape]


@pytest.mark.parametrize("precision", [lax.Precision.HIGHEST, "highest", (lax.Precision.HIGH, lax.Precision.HIGH)])
def test_precision_is_accepted(precision):
    rng = np.random.default_rng(4)
    x, w = random_array(rng, (1, 2, 5, 5)), random_array(rng, (3, 2, 3, 3))
    out, grads = value_and_grads(lambda *a: jaxconv.conv(*a, precision=precision), (x, w), jnp.ones((1, 3, 3, 3)))
    expected, expected_grads = value_and_grads(lambda *a: lax_conv_reference(*a), (x, w), jnp.ones((1, 3, 3, 3)))
    for actual, reference in zip(jax.tree.leaves((out, grads)), jax.tree.leaves((expected, expected_grads))):
        assert_close(actual, reference)


# --- the note's equations -------------------------------------------------------------


def test_note_equations():
    """F_f = W.reshape(FN, -1).T, O_f = phi F_f, dL/dF_f = phi^T dL/dO_f, dL/dphi = dL/dO_f F_f^T, dL/db."""
    rng = np.random.default_rng(5)
    x, w = random_array(rng, (2, 3, 5, 5)), random_array(rng, (4, 3, 3, 3))
    phi = jaxconv.im2col(x, 3).reshape(-1, 27)  # (N*OH*OW, C*FH*FW)
    w_flat = jaxconv.flatten_filters(w, 1)
    assert w_flat.shape == (1, 27, 4)
    np.testing.assert_array_equal(np.asarray(w_flat[0]), np.asarray(w.reshape(4, -1).T))
    hi = lax.Precision.HIGHEST
    out_t = jaxconv.forward_gemm(phi.T, w_flat, precision=hi)  # O_f^T, (G, FN, N*OH*OW)
    assert_close(out_t[0], jnp.matmul(phi, w_flat[0], precision=hi).T)
    # ... and O_f laid out as (N, FN, OH, OW) is the convolution.
    assert_close(out_t[0].reshape(4, 2, 3, 3).swapaxes(0, 1), lax_conv_reference(x, w))
    dout_t = random_array(rng, (1, 4, 18))
    assert_close(jaxconv.filter_grad(phi.T, dout_t, precision=hi)[0], jnp.matmul(phi.T, dout_t[0].T, precision=hi))
    assert_close(jaxconv.cols_grad(dout_t, w_flat, precision=hi), jnp.matmul(dout_t[0].T, w_flat[0].T, precision=hi).T)
    assert_close(jaxconv.bias_grad(dout_t), dout_t[0].sum(axis=1))


def test_flatten_filters_groups():
    w = jnp.arange(6 * 2 * 2 * 2.0).reshape(6, 2, 2, 2)
    w_flat = jaxconv.flatten_filters(w, 3)
    assert w_flat.shape == (3, 8, 2)
    for g in range(3):
        np.testing.assert_array_equal(np.asarray(w_flat[g]), np.asarray(w[2 * g : 2 * g + 2].reshape(2, -1).T))


# --- how it composes with JAX ---------------------------------------------------------


def _small_inputs(seed=6):
    rng = np.random.default_rng(seed)
    return random_array(rng, (2, 4, 5, 5)), random_array(rng, (6, 2, 3, 3)), random_array(rng, (6,))


KWARGS = dict(padding=1, stride=(1, 2), groups=2)


def test_no_conv_primitive_in_gradient_jaxpr():
    x, w, b = _small_inputs()
    loss = lambda x, w, b: jnp.sum(jaxconv.conv(x, w, b, **KWARGS) ** 2)
    names = primitive_names(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(x, w, b))
    assert "conv_general_dilated" not in names and NOTE_BACKWARD <= names
    hlo = lowered_ops(jax.grad(loss, argnums=(0, 1, 2)), x, w, b)  # the primitives lower to gathers and GEMMs
    assert "stablehlo.convolution" not in hlo and "stablehlo.gather" in hlo and "stablehlo.dot_general" in hlo
    # The walker does find conv_general_dilated where there is one.
    lax_loss = lambda x, w, b: jnp.sum(jaxconv.lax_conv(x, w, b, **KWARGS) ** 2)
    assert "conv_general_dilated" in primitive_names(jax.make_jaxpr(jax.grad(lax_loss, argnums=(0, 1, 2)))(x, w, b))


def test_jit():
    x, w, b = _small_inputs()
    f = jax.jit(lambda x, w, b: jaxconv.conv(x, w, b, **KWARGS))
    assert_close(f(x, w, b), lax_conv_reference(x, w, b, **KWARGS))


@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0)], ids=["over-x", "over-w", "over-both"])
def test_vmap(in_axes):
    rng = np.random.default_rng(7)
    xs, ws = random_array(rng, (3, 2, 4, 5, 5)), random_array(rng, (3, 6, 2, 3, 3))
    x, w = xs if in_axes[0] is not None else xs[0], ws if in_axes[1] is not None else ws[0]
    out = jax.vmap(lambda x, w: jaxconv.conv(x, w, **KWARGS), in_axes=in_axes)(x, w)
    pick = lambda a, axis, i: a[i] if axis is not None else a
    for i in range(3):
        expected = lax_conv_reference(pick(x, in_axes[0], i), pick(w, in_axes[1], i), **KWARGS)
        assert_close(out[i], expected)
    # Per-example gradients: vmap of grad.
    loss = lambda x, w: jnp.sum(jnp.sin(jaxconv.conv(x, w, **KWARGS)))
    lax_loss = lambda x, w: jnp.sum(jnp.sin(lax_conv_reference(x, w, **KWARGS)))
    grads = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=in_axes)(x, w)
    for i in range(3):
        expected = jax.grad(lax_loss, argnums=(0, 1))(pick(x, in_axes[0], i), pick(w, in_axes[1], i))
        assert_close(grads[0][i], expected[0])
        assert_close(grads[1][i], expected[1])


def test_grad_of_grad():
    x, w, b = _small_inputs()

    def second_order(conv_fn):
        loss = lambda x, w, b: jnp.sum(jnp.sin(conv_fn(x, w, b, **KWARGS)))
        inner = lambda x, w, b: jnp.sum(jax.grad(loss, argnums=(0, 1))(x, w, b)[1] ** 2)
        return jax.jit(jax.grad(inner, argnums=(0, 1, 2)))(x, w, b)

    for actual, expected in zip(second_order(jaxconv.conv), second_order(lax_conv_reference)):
        assert_close(actual, expected)


def test_jacrev():
    x, w, b = _small_inputs()
    x = x[:1, :, :4, :3]
    jac = jax.jacrev(lambda x, w: jaxconv.conv(x, w, **KWARGS), argnums=(0, 1))(x, w)
    expected = jax.jacrev(lambda x, w: lax_conv_reference(x, w, **KWARGS), argnums=(0, 1))(x, w)
    assert jac[0].shape == (1, 6, 4, 2) + x.shape
    for actual, reference in zip(jac, expected):
        assert_close(actual, reference)


def test_hessian_forward_over_reverse_works():
    """jax.hessian is jacfwd(jacrev): forward mode only differentiates the (plain JAX) backward rule."""
    x, w, _ = _small_inputs()
    x, w = x[:1, :, :3, :3], w[:2]  # 36 filter taps
    loss = lambda conv_fn: lambda w: jnp.sum(jnp.sin(conv_fn(x, w, **KWARGS)))
    assert_close(jax.hessian(loss(jaxconv.conv))(w), jax.hessian(loss(lax_conv_reference))(w))


@pytest.mark.parametrize("transform", ["jvp", "jacfwd", "linearize"])
def test_forward_mode_matches_lax(transform):
    """jvp, jacfwd and linearize: the conv's primitives are bilinear, so forward mode is the conv of the tangents."""
    x, w, b = _small_inputs()
    tangents = tuple(jnp.cos(a) for a in (x, w, b))
    results = []
    for conv_fn in (jaxconv.conv, lax_conv_reference):
        f = functools.partial(conv_fn, **KWARGS)
        if transform == "jvp":
            results.append(jax.jvp(f, (x, w, b), tangents))
        elif transform == "jacfwd":
            results.append(jax.jacfwd(f, argnums=(0, 1, 2))(x, w, b))
        else:
            out, f_lin = jax.linearize(f, x, w, b)
            results.append((out, jax.jit(f_lin)(*tangents)))
    for actual, expected in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        assert_close(actual, expected)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_default_precision_within_the_backend_tolerance(dtype):
    """precision=None is the backend's default (TF32 on NVIDIA GPUs, as for lax); the tolerance follows it."""
    case = FIXED_CASES["2d-grouped-same"]
    args, rng = make_inputs(case, dtype, seed=4)
    kwargs = conv_kwargs(case)
    cotangent = random_array(rng, lax_conv_reference(*args, **kwargs).shape, dtype)
    with jax.default_matmul_precision("default"):
        out, grads = value_and_grads(lambda *a: jaxconv.conv(*a, **kwargs), args, cotangent)
    high = reference_dtype(dtype)
    expected, expected_grads = value_and_grads(
        lambda *a: lax_conv_reference(*a, **kwargs), [a.astype(high) for a in args], cotangent.astype(high)
    )
    tolerance = default_precision_tolerance(dtype)
    for actual, reference in zip((out, *grads), (expected, *expected_grads)):
        scale = float(np.max(np.abs(np.asarray(reference, np.float64))))
        assert float(np.max(np.abs(np.asarray(actual, np.float64) - np.asarray(reference, np.float64)))) <= (
            tolerance * max(1.0, scale)
        )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_filter_gradient_does_not_drift_with_chunks(dtype):
    """dL/dW sums over the chunks in float32: one image per chunk is as accurate as the whole batch at once."""
    rng = np.random.default_rng(11)
    x, w = random_array(rng, (64, 8, 8, 8), dtype), random_array(rng, (8, 8, 3, 3), dtype)
    cotangent = random_array(rng, (64, 8, 8, 8), dtype)
    x32, cotangent32 = x.astype(jnp.float32), cotangent.astype(jnp.float32)
    reference = jax.grad(lambda w: jnp.sum(lax_conv_reference(x32, w, padding=1) * cotangent32))(w.astype(jnp.float32))

    def error(max_cols_bytes):
        loss = lambda w: jnp.sum(jaxconv.conv2d(x, w, padding=1, max_cols_bytes=max_cols_bytes) * cotangent)
        dw = jax.grad(loss)(w).astype(jnp.float32)
        return float(jnp.max(jnp.abs(dw - reference)) / jnp.max(jnp.abs(reference)))

    whole, one_image_chunks = error(None), error(1)
    assert one_image_chunks <= 1.5 * whole + 1e-3, (one_image_chunks, whole)


def test_bfloat16_input_gradient_is_no_worse_than_lax():
    """dL/dphi stays float32 until col2im has summed the overlapping windows, as lax accumulates."""
    rng = np.random.default_rng(5)
    x, w, cotangent = (random_array(rng, shape) for shape in ((2, 64, 16, 16), (64, 64, 3, 3), (2, 64, 16, 16)))
    lax_conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))
    dx = lambda conv, *args: jax.vjp(lambda x: conv(x, args[1]), args[0])[1](args[2])[0].astype(jnp.float32)
    reference = dx(lax_conv, x, w, cotangent)
    error = lambda a: float(jnp.abs(a - reference).max() / jnp.abs(reference).max())
    half = [a.astype(jnp.bfloat16) for a in (x, w, cotangent)]
    ours = error(dx(lambda x, w: jaxconv.conv2d(x, w, padding=1), *half))
    assert ours <= 1.05 * error(dx(lax_conv, *half)), ours
