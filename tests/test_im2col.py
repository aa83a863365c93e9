"""Tests for jaxconv._im2col: phi(I) against NumPy and lax, and col2im as its exact adjoint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import (
    conv_cases,
    lax_conv_reference,
    padding_pairs,
    per_dim,
    primitive_names,
    random_array,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import jaxconv
from jaxconv._geometry import conv_geometry

im2col_cases = conv_cases(max_groups=1)


def _window_args(case):
    kernel = case["w_shape"][2:]
    return kernel, dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])


def numpy_im2col(x, kernel, *, stride, padding, dilation):
    """phi(I) by loops over windows: one row per output position (row-major), columns in (C, k1, k2, ...) order."""
    x = np.asarray(x)
    n = x.ndim - 2
    stride, dilation = per_dim(stride, n), per_dim(dilation, n)
    pairs = padding_pairs(padding, x.shape[2:], kernel, stride, dilation)
    padded = np.pad(x, [(0, 0), (0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in pairs])
    crop = tuple(slice(max(-lo, 0), padded.shape[2 + d] - max(-hi, 0)) for d, (lo, hi) in enumerate(pairs))
    padded = padded[(slice(None), slice(None)) + crop]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    out = [(p - span) // s + 1 for p, span, s in zip(padded.shape[2:], spans, stride)]
    rows = []
    for position in np.ndindex(*out):
        window = tuple(slice(o * s, o * s + span, d) for o, s, span, d in zip(position, stride, spans, dilation))
        rows.append(padded[(slice(None), slice(None)) + window].reshape(x.shape[0], -1))
    return np.stack(rows, axis=1), tuple(out)


# --- im2col ---------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(case=im2col_cases, seed=st.integers(0, 2**16))
def test_im2col_matches_numpy_loops_and_gemm_is_lax_conv(case, seed):
    """phi(I) equals a loop over windows, and ``cols @ w.reshape(FN, -1).T`` laid out as (N, FN, *out) is the conv."""
    rng = np.random.default_rng(seed)
    x, w = random_array(rng, case["x_shape"]), random_array(rng, case["w_shape"])
    kernel, window = _window_args(case)
    expected_cols, out_spatial = numpy_im2col(x, kernel, **window)

    @jax.jit
    def run(x, w):
        cols = jaxconv.im2col(x, kernel, **window)
        out = jnp.matmul(cols, w.reshape(w.shape[0], -1).T, precision=lax.Precision.HIGHEST)
        return cols, out.transpose(0, 2, 1).reshape(x.shape[:1] + w.shape[:1] + out_spatial)

    cols, out = run(x, w)
    n, c = case["x_shape"][:2]
    assert cols.shape == (n, int(np.prod(out_spatial)), c * int(np.prod(kernel)))
    assert cols.dtype == x.dtype
    # A gather moves values without arithmetic: exact equality.
    np.testing.assert_array_equal(np.asarray(cols), expected_cols)
    expected = jax.jit(lambda x, w: lax_conv_reference(x, w, **window))(x, w)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "x_shape, kernel",
    [((2, 3, 7), (3,)), ((2, 3, 6, 5), (3, 2)), ((1, 2, 4, 5, 3), (2, 3, 2))],
    ids=["1d", "2d", "3d"],
)
def test_im2col_shape_and_column_order(x_shape, kernel):
    x = jnp.arange(np.prod(x_shape), dtype=jnp.float32).reshape(x_shape)
    cols = jaxconv.im2col(x, kernel)
    out_spatial = tuple(s - k + 1 for s, k in zip(x_shape[2:], kernel))
    assert cols.shape == (x_shape[0], int(np.prod(out_spatial)), x_shape[1] * int(np.prod(kernel)))
    # The first row is the first window: x[n, :, :k1, :k2, ...] flattened channel-major.
    first = x[(slice(None), slice(None)) + tuple(slice(0, k) for k in kernel)].reshape(x_shape[0], -1)
    np.testing.assert_array_equal(np.asarray(cols[:, 0]), np.asarray(first))
    # The last row is the last window.
    last = x[(slice(None), slice(None)) + tuple(slice(s - k, s) for s, k in zip(x_shape[2:], kernel))]
    np.testing.assert_array_equal(np.asarray(cols[:, -1]), np.asarray(last.reshape(x_shape[0], -1)))


def test_im2col_jaxpr_is_a_gather():
    x = jnp.ones((2, 3, 6, 6))
    names = primitive_names(jax.make_jaxpr(lambda x: jaxconv.im2col(x, 3, stride=2, padding=1))(x))
    assert "gather" in names
    assert "conv_general_dilated" not in names


def test_im2col_accepts_numpy_and_int_kernel_size():
    x = np.arange(2 * 9.0, dtype=np.float32).reshape(1, 2, 9)
    cols = jaxconv.im2col(x, 3, stride=3)
    np.testing.assert_array_equal(np.asarray(cols), x.reshape(1, 2, 3, 3).transpose(0, 2, 1, 3).reshape(1, 3, 6))


def test_window_indices_index_the_padded_input():
    x = random_array(np.random.default_rng(0), (2, 3, 5, 6))
    geometry = conv_geometry((5, 6), (2, 3), stride=(2, 1), padding=((1, 0), (2, -1)), dilation=(2, 1))
    indices = jaxconv.window_indices(geometry)
    assert indices.shape == (geometry.num_windows, geometry.window_size)
    padded = np.pad(np.asarray(x), [(0, 0), (0, 0), (1, 0), (2, 0)])[:, :, :, :-1]
    assert padded.shape[2:] == geometry.padded_spatial
    gathered = padded.reshape(2, 3, -1)[:, :, indices]  # (N, C, windows, kernel offsets)
    expected = gathered.transpose(0, 2, 1, 3).reshape(2, geometry.num_windows, -1)
    cols = jaxconv.im2col(x, (2, 3), stride=(2, 1), padding=((1, 0), (2, -1)), dilation=(2, 1))
    np.testing.assert_array_equal(np.asarray(cols), expected)


@pytest.mark.parametrize(
    "in_spatial, kernel, options",
    [
        ((5, 6), (2, 3), dict(stride=(2, 1), padding=((1, 0), (2, -1)), dilation=(2, 1))),
        ((9,), (3,), dict(stride=3, dilation=2)),
        ((4, 5, 6), (2, 1, 3), dict(stride=(1, 2, 2), padding=1)),
    ],
)
def test_window_starts_are_the_window_indices_of_the_first_window(in_spatial, kernel, options):
    """The gather's index array (one box corner per kernel offset) reads exactly what window_indices lists."""
    from jaxconv._im2col import window_span, window_starts

    geometry = conv_geometry(in_spatial, kernel, **options)
    starts = window_starts(geometry).reshape(geometry.window_size, geometry.ndim)
    strides = np.cumprod((1,) + geometry.padded_spatial[::-1])[:-1][::-1]
    np.testing.assert_array_equal(starts @ strides, jaxconv.window_indices(geometry)[0])
    span = window_span(geometry)
    assert all(start + size <= padded for start, size, padded in zip(starts.max(0), span, geometry.padded_spatial))


# --- col2im: the exact adjoint ---------------------------------------------------


def _inner(a, b):
    return float(jnp.vdot(a, b).real)


@settings(max_examples=30, deadline=None)
@given(case=im2col_cases, seed=st.integers(0, 2**16))
def test_col2im_is_the_adjoint_of_im2col(case, seed):
    """<im2col(x), c> == <x, col2im(c)> for both col2im methods, in float64; and col2im is linear_transpose(im2col)."""
    kernel, window = _window_args(case)

    @jax.jit
    def run(x, c):
        cols = jaxconv.im2col(x, kernel, **window)
        back = {m: jaxconv.col2im(c, x.shape, kernel, **window, method=m) for m in ("pad_add", "scatter_add")}
        (transposed,) = jax.linear_transpose(lambda x: jaxconv.im2col(x, kernel, **window), x)(c)
        return cols, back, transposed

    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        x = random_array(rng, case["x_shape"], jnp.float64)
        _, out_spatial = numpy_im2col(x, kernel, **window)
        cols_shape = (x.shape[0], int(np.prod(out_spatial)), x.shape[1] * int(np.prod(kernel)))
        c = random_array(rng, cols_shape, jnp.float64)
        cols, back, transposed = run(x, c)
        lhs = _inner(cols, c)
        for method, x_back in back.items():
            assert x_back.shape == x.shape and x_back.dtype == jnp.float64, method
            assert abs(lhs - _inner(x, x_back)) <= 1e-12 * float(jnp.abs(cols).sum() * jnp.abs(c).max() + 1), method
            np.testing.assert_allclose(np.asarray(x_back), np.asarray(transposed), rtol=0, atol=1e-12)


def test_col2im_counts_window_visits():
    # col2im of ones: how many windows read each pixel; with stride 2, padding 1, kernel 3 on 5 pixels:
    # windows start at padded 0, 2, 4 -> input pixels {0, 1}, {1, 2, 3}, {3, 4}.
    counts = jaxconv.col2im(jnp.ones((1, 3, 3)), (1, 1, 5), 3, stride=2, padding=1)
    np.testing.assert_array_equal(np.asarray(counts), [[[1, 2, 1, 2, 1]]])


@pytest.mark.parametrize("method", ["pad_add", "scatter_add"])
def test_col2im_3d_complex_adjoint(method):
    rng = np.random.default_rng(1)
    x = random_array(rng, (2, 2, 4, 5, 3), jnp.complex64)
    window = dict(stride=(1, 2, 1), padding=((1, 0), (0, 1), (-1, 1)), dilation=(2, 1, 1))
    cols = jaxconv.im2col(x, (2, 2, 2), **window)
    c = random_array(rng, cols.shape, jnp.complex64)
    back = jaxconv.col2im(c, x.shape, (2, 2, 2), **window, method=method)
    # <im2col(x), c> == <x, col2im(c)> for the (conjugate-linear) complex inner product too.
    np.testing.assert_allclose(complex(jnp.vdot(cols, c)), complex(jnp.vdot(x, back)), rtol=1e-5)


# --- errors ---------------------------------------------------------------------


def test_im2col_wrong_rank():
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, \*spatial\).*got shape \(4, 4\)"):
        jaxconv.im2col(jnp.ones((4, 4)), 3)
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 2, 2, 2, 2\)"):
        jaxconv.im2col(jnp.ones((1, 1, 2, 2, 2, 2)), 1)


def test_im2col_kernel_size_wrong_length():
    with pytest.raises(
        ValueError,
        match=r"kernel_size must have one entry per spatial dimension \(2\), got 3: \(3, 3, 3\), "
        r"for x of shape \(1, 1, 5, 5\)",
    ):
        jaxconv.im2col(jnp.ones((1, 1, 5, 5)), (3, 3, 3))


@pytest.mark.parametrize(
    "kernel_size, error, match",
    [
        (0, ValueError, r"kernel_size must be >= 1 in every dimension, got \(0, 0\)"),
        ((3, -1), ValueError, r"kernel_size must be >= 1 in every dimension, got \(3, -1\)"),
        ((2.0, 2), TypeError, "kernel_size must be an int, got float 2.0"),
        ((True, 2), TypeError, "kernel_size must be an int, got bool True"),
    ],
)
def test_im2col_kernel_size_not_positive_int(kernel_size, error, match):
    with pytest.raises(error, match=match):
        jaxconv.im2col(jnp.ones((1, 1, 5, 5)), kernel_size)


def test_im2col_kernel_size_bool():
    with pytest.raises((ValueError, TypeError), match="kernel_size"):
        jaxconv.im2col(jnp.ones((1, 1, 5, 5)), True)


def test_im2col_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"kernel of spatial shape \(3, 3\) \(dilated to \(5, 5\)\) is larger"):
        jaxconv.im2col(jnp.ones((1, 1, 4, 4)), 3, dilation=2)


@pytest.mark.parametrize("stride, dilation, name", [(0, 1, "stride"), (1, 0, "dilation"), ((1, -1), 1, "stride")])
def test_im2col_non_positive_stride_or_dilation(stride, dilation, name):
    with pytest.raises(ValueError, match=f"{name} must be >= 1"):
        jaxconv.im2col(jnp.ones((1, 1, 5, 5)), 3, stride=stride, dilation=dilation)


def test_im2col_unknown_padding():
    with pytest.raises(ValueError, match="padding must be one of .*got 'FULL'"):
        jaxconv.im2col(jnp.ones((1, 1, 5, 5)), 3, padding="FULL")


def test_col2im_wrong_cols_shape():
    with pytest.raises(ValueError, match=r"cols has shape \(1, 9, 9\), but im2col of input_shape \(1, 1, 5, 5\)"):
        jaxconv.col2im(jnp.ones((1, 9, 9)), (1, 1, 5, 5), 2)
    with pytest.raises(ValueError, match=r"gives \(2, 9, 18\)"):
        jaxconv.col2im(jnp.ones((1, 9, 18)), (2, 2, 5, 5), 3)


def test_col2im_unknown_method():
    with pytest.raises(ValueError, match="method must be one of .*got 'loop'"):
        jaxconv.col2im(jnp.ones((1, 9, 9)), (1, 1, 5, 5), 3, method="loop")


def test_col2im_wrong_input_rank():
    with pytest.raises(ValueError, match=r"input_shape must have shape \(N, C, \*spatial\)"):
        jaxconv.col2im(jnp.ones((1, 9, 9)), (5, 5), 3)


def test_col2im_refuses_non_int_shapes_instead_of_truncating():
    with pytest.raises(TypeError, match="input_shape must be an int, got float 6.5"):
        jaxconv.col2im(jnp.ones((2, 16, 36)), (2, 4, 6.5, 6), 3)
    with pytest.raises(TypeError, match="input_shape must be a sequence of ints"):
        jaxconv.col2im(jnp.ones((2, 16, 36)), None, 3)
    with pytest.raises(TypeError, match="cols must be an array, got None"):
        jaxconv.col2im(None, (2, 4, 6, 6), 3)


def test_im2col_accepts_numpy_ints():
    x = jnp.arange(32.0).reshape(2, 1, 4, 4)
    expected = jaxconv.im2col(x, 3, stride=1, padding=1)
    assert bool((jaxconv.im2col(x, np.int64(3), stride=np.array([1, 1]), padding=np.array([1, 1])) == expected).all())


def test_the_transposed_pair_checks_its_operands_against_the_geometry():
    geometry = conv_geometry((8, 8), (3, 3))  # 36 windows of 9 elements
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, \*\(8, 8\)\).*got shape \(2, 4, 5, 5\)"):
        jaxconv.im2col_t(jnp.ones((2, 4, 5, 5)), geometry)
    with pytest.raises(TypeError, match="geometry must be a ConvGeometry .* got NoneType"):
        jaxconv.im2col_t(jnp.ones((2, 4, 8, 8)), None)
    with pytest.raises(ValueError, match=r"cols_t must have shape \(C\*9, 108\) for batch=3 .* got shape \(36, 72\)"):
        jaxconv.col2im_t(jnp.ones((36, 72)), geometry, 3)
    with pytest.raises(TypeError, match="batch must be an int, got float 2.0"):
        jaxconv.col2im_t(jnp.ones((36, 72)), geometry, 2.0)
    with pytest.raises(TypeError, match="cols_t must be an array, got None"):
        jaxconv.col2im_t(None, geometry, 2)
    # What they accept, they compute under jit as the checked pair does.
    x = jnp.arange(2 * 4 * 64.0).reshape(2, 4, 8, 8)
    cols_t = jax.jit(jaxconv.im2col_t, static_argnums=1)(x, geometry)
    assert cols_t.shape == (36, 72)
    np.testing.assert_array_equal(
        jaxconv.col2im_t(cols_t, geometry, 2), jaxconv.col2im(cols_t.T.reshape(2, 36, 36), x.shape, 3)
    )
