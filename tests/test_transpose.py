"""Transposed convs computed as the note read backwards, against lax (and PyTorch when installed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import jaxconv
from jaxconv._transpose import primal_filters, transposed_geometry

RTOL = ATOL = 2e-5


def _values_and_grads(fn, lhs, rhs):
    out = fn(lhs, rhs)
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=out.shape), out.dtype)
    grads = jax.grad(lambda a, b: jnp.vdot(fn(a, b), cotangent).real, (0, 1))(lhs, rhs)
    return out, grads


def _check_against(fn, reference, lhs, rhs):
    out, grads = _values_and_grads(fn, lhs, rhs)
    ref_out, ref_grads = _values_and_grads(reference, lhs, rhs)
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    np.testing.assert_allclose(out, ref_out, rtol=RTOL, atol=ATOL)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    jaxpr = str(jax.make_jaxpr(lambda a, b: _values_and_grads(fn, a, b))(lhs, rhs))
    assert "conv_general_dilated" not in jaxpr  # the note's formulas, not lax's conv, in both passes


def _normal(shape, seed=0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


# lhs spatial, kernel, lhs_dilation (the transposed stride), padding, rhs_dilation, groups, (C, O)
ROUTED = [
    ((5, 6), (3, 3), (2, 2), ((1, 2), (0, 1)), (1, 1), 1, (4, 3)),
    ((7,), (4,), (3,), ((-1, 2),), (2,), 2, (4, 6)),  # negative padding crops the output
    ((3, 4, 2), (2, 3, 2), (2, 1, 3), ((1, 1), (2, 0), (0, 0)), (1, 1, 1), 1, (2, 2)),
    ((6, 5), (3, 3), (2, 2), ((2, 2), (2, 2)), (1, 1), 4, (4, 4)),  # depthwise: the multiply-reduce contraction
    ((6, 5), (3, 3), (2, 2), ((2, 2), (2, 2)), (1, 1), 4, (4, 8)),  # depthwise, channel multiplier 2
    ((9,), (8,), (4,), ((5, 5),), (1,), 1, (3, 5)),  # k 8, stride 4: an audio upsampler's shape
    ((4, 4), (4, 4), (8, 8), ((0, 0), (-3, 5)), (1, 1), 1, (2, 3)),  # stride 8 > kernel: gaps in the output
]


@pytest.mark.parametrize("spatial, kernel, stride, padding, dilation, groups, features", ROUTED)
@pytest.mark.parametrize("layout", ["NC*", "N*C"])
def test_input_dilated_conv_is_routed_and_matches_lax(
    spatial, kernel, stride, padding, dilation, groups, features, layout
):
    channels, out_features = features
    n = len(spatial)
    lhs = _normal((2, channels) + spatial)
    rhs = _normal((out_features, channels // groups) + kernel, seed=1)
    dimension_numbers = None
    if layout == "N*C":
        lhs, rhs = jnp.moveaxis(lhs, 1, -1), jnp.moveaxis(rhs, (0, 1), (-1, -2))
        chars = "HWD"[:n]
        dimension_numbers = (f"N{chars}C", f"{chars}IO", f"N{chars}C")
    kwargs = dict(
        lhs_dilation=stride, rhs_dilation=dilation, feature_group_count=groups, dimension_numbers=dimension_numbers
    )
    call = lambda conv: lambda a, b: conv(a, b, (1,) * n, padding, **kwargs)
    _check_against(call(jaxconv.conv_general_dilated), call(lax.conv_general_dilated), lhs, rhs)
    x_shape = (2, channels) + spatial
    strategy = jaxconv.conv_strategy(
        x_shape, (out_features, channels // groups) + kernel, padding=padding, dilation=dilation,
        lhs_dilation=stride, groups=groups,
    )  # fmt: skip
    assert strategy.startswith("transposed/")


@pytest.mark.parametrize("window_strides, batch_groups", [((2, 1), 1), ((1, 1), 2)], ids=["strided", "batch-groups"])
def test_input_dilation_elsewhere_keeps_the_dilated_gather(window_strides, batch_groups):
    lhs, rhs = _normal((4, 2, 5, 5)), _normal((4, 2, 3, 3), seed=1)
    call = lambda conv: (
        lambda a, b: conv(a, b, window_strides, ((1, 1), (1, 1)), lhs_dilation=(2, 2), batch_group_count=batch_groups)
    )
    _check_against(call(jaxconv.conv_general_dilated), call(lax.conv_general_dilated), lhs, rhs)
    assert jaxconv.conv_strategy((4, 2, 5, 5), (4, 2, 3, 3), stride=window_strides, padding=1, lhs_dilation=2) in (
        "gemm",
        "multiply_reduce",
    ) or window_strides == (1, 1)


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((1, 2), (0, 0)), ((-1, 0), (3, 1))])
@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize("consistent", [False, True])
def test_conv_transpose_matches_lax(padding, transpose_kernel, consistent):
    if consistent and not isinstance(padding, str) and min(min(p) for p in padding) < 0:
        pytest.skip("lax reads negative forward-conv padding as more output than its kernel reaches")
    lhs, rhs = _normal((2, 5, 6, 3)), _normal((3, 2, 3, 4), seed=1)  # NHWC, HWIO
    kwargs = dict(rhs_dilation=(1, 2), transpose_kernel=transpose_kernel, use_consistent_padding=consistent)
    if transpose_kernel:
        rhs = rhs.swapaxes(2, 3)  # the kernel's I and O swap places
    call = lambda conv: lambda a, b: conv(a, b, (2, 3), padding, **kwargs)
    _check_against(call(jaxconv.conv_transpose), call(lax.conv_transpose), lhs, rhs)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_transpose_default_layouts_per_rank(rank):
    lhs, rhs = _normal((2,) + (4,) * rank + (3,)), _normal((2,) * rank + (3, 2), seed=1)
    call = lambda conv: lambda a, b: conv(a, b, (2,) * rank, "SAME")
    _check_against(call(jaxconv.conv_transpose), call(lax.conv_transpose), lhs, rhs)


def _torch_args_as_lax(w, stride, padding, output_padding, groups, dilation):
    """PyTorch's conv_transpose arguments as lax's input-dilated conv: flipped, swapped filters and pads."""
    kernel = w.shape[2:]
    pads = [(d * (k - 1) - p, d * (k - 1) - p + op) for k, p, op, d in zip(kernel, padding, output_padding, dilation)]
    return primal_filters(w, groups), pads  # primal_filters is its own inverse


@pytest.mark.parametrize(
    "spatial, kernel, stride, padding, output_padding, groups, dilation, features",
    [
        ((7,), (4,), (2,), (1,), (1,), 1, (1,), (3, 5)),
        ((5, 6), (3, 3), (2, 2), (1, 0), (1, 0), 1, (1, 1), (4, 2)),
        ((5, 6), (3, 2), (3, 2), (0, 1), (2, 0), 2, (2, 1), (4, 6)),
        ((4, 4), (3, 3), (1, 1), (0, 0), (1, 0), 1, (2, 2), (2, 3)),  # output_padding < dilation, stride 1
        ((3, 4, 2), (2, 2, 3), (2, 1, 3), (0, 1, 1), (1, 0, 2), 1, (1, 1, 1), (2, 2)),
        ((6, 6), (3, 3), (2, 2), (1, 1), (1, 1), 4, (1, 1), (4, 4)),  # depthwise
    ],
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_friendly_conv_transpose_matches_lax(
    spatial, kernel, stride, padding, output_padding, groups, dilation, features, with_bias
):
    channels, out_features = features
    n = len(spatial)
    x = _normal((2, channels) + spatial)
    w = _normal((channels, out_features // groups) + kernel, seed=1)
    b = _normal((out_features,), seed=2) if with_bias else None
    friendly = getattr(jaxconv, f"conv_transpose{n}d")
    options = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    lax_w, pads = _torch_args_as_lax(w, stride, padding, output_padding, groups, dilation)

    def reference(x, w):
        lax_w, _ = _torch_args_as_lax(w, stride, padding, output_padding, groups, dilation)
        out = lax.conv_general_dilated(
            x, lax_w, (1,) * n, pads, lhs_dilation=stride, rhs_dilation=dilation, feature_group_count=groups
        )
        return out if b is None else out + b.reshape((1, -1) + (1,) * n)

    _check_against(lambda x, w: friendly(x, w, b, **options), reference, x, w)


def test_friendly_conv_transpose_matches_torch():
    torch = pytest.importorskip("torch")
    x, w, b = _normal((2, 4, 5, 6)), _normal((4, 3, 3, 2), seed=1), _normal((6,), seed=2)
    options = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2))
    out = jaxconv.conv_transpose2d(x, w, b, **options)
    expected = torch.nn.functional.conv_transpose2d(*(torch.tensor(np.asarray(a)) for a in (x, w, b)), **options)
    np.testing.assert_allclose(out, expected.numpy(), rtol=RTOL, atol=ATOL)


@settings(deadline=None, max_examples=25)
@given(
    size=st.integers(1, 6),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 4),
    low=st.integers(-2, 4),
    high=st.integers(-2, 4),
    dilation=st.integers(1, 3),
)
def test_routed_drop_in_over_a_sweep_of_geometries(size, kernel, stride, low, high, dilation):
    out_size = (size - 1) * stride + 1 + low + high - (kernel - 1) * dilation
    if out_size < 1:
        return  # lax's output is empty: lax's own path, tested in test_lax_compat
    lhs, rhs = _normal((1, 2, size)), _normal((3, 2, kernel), seed=1)
    call = lambda conv: lambda a, b: conv(a, b, (1,), [(low, high)], lhs_dilation=(stride,), rhs_dilation=(dilation,))
    _check_against(call(jaxconv.conv_general_dilated), call(lax.conv_general_dilated), lhs, rhs)


def test_transposed_geometry_is_the_conv_whose_input_gradient_it_is():
    g = transposed_geometry((4, 3), (3, 2), (2, 3), ((2, 1), (0, 4)), (1, 2))
    assert g.out_spatial == (4, 3) and g.stride == (2, 3) and g.dilation == (1, 2)
    assert g.padding == ((0, 1), (2, -2))  # (K_d - 1 - lo, K_d - 1 - hi), K_d = 3 in both
    assert transposed_geometry((0,), (3,), (2,), ((2, 2),), (1,)) is None  # an empty input keeps lax's path


def test_compiled_flops_are_the_useful_ones():
    """No product with an inserted zero: the compiled transposed conv's flops stay within 1.2x the useful ones."""
    n, size, channels, out_features, k, s = 2, 8, 64, 64, 4, 2
    lhs, rhs = jnp.ones((n, size, size, channels)), jnp.ones((k, k, channels, out_features))
    f = jax.jit(lambda a, b: jaxconv.conv_transpose(a, b, (s, s), "SAME"))
    flops = f.lower(lhs, rhs).compile().cost_analysis()["flops"]
    useful = 2 * n * size * size * channels * out_features * k * k  # every input pixel meets every tap
    assert useful <= flops <= 1.2 * useful, (flops, useful)
    dilated = jax.jit(lambda a, b: lax.conv_transpose(a, b, (s, s), "SAME"))  # lax's own count, for the record
    assert dilated.lower(lhs, rhs).compile().cost_analysis()["flops"] > 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(stride=2, output_padding=2), ValueError, "output_padding"),
        (dict(groups=3), ValueError, "groups=3"),
        (dict(padding=-1), ValueError, "padding"),
        (dict(stride=0), ValueError, "stride"),
        (dict(stride=1, padding=3), ValueError, "empty output"),
    ],
)
def test_friendly_conv_transpose_bad_arguments(kwargs, error, match):
    x, w = jnp.ones((1, 4, 3, 3)), jnp.ones((4, 2, 3, 3))
    with pytest.raises(error, match=match):
        jaxconv.conv_transpose2d(x, w, **kwargs)


def test_friendly_conv_transpose_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="C_in = 4"):
        jaxconv.conv_transpose2d(jnp.ones((1, 4, 3, 3)), jnp.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"b must have shape \(C_out,\) = \(2,\)"):
        jaxconv.conv_transpose2d(jnp.ones((1, 4, 3, 3)), jnp.ones((4, 2, 3, 3)), jnp.ones(4))
    with pytest.raises(TypeError, match="floating or complex"):
        jaxconv.conv_transpose1d(jnp.ones((1, 4, 3), int), jnp.ones((4, 2, 3), int))
    with pytest.raises(ValueError, match="rank 4"):
        jaxconv.conv_transpose2d(jnp.ones((1, 4, 3)), jnp.ones((4, 2, 3)))
    with pytest.raises(ValueError, match="one rank"):
        jaxconv.conv_transpose(jnp.ones((1, 4, 3)), jnp.ones((4, 2, 3, 3)), (2,), "SAME")
