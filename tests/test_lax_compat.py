"""Tests for jaxconv.conv_general_dilated: a drop-in for jax.lax.conv_general_dilated, parameter by parameter."""

import contextlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import (
    FLOAT_DTYPES,
    NOTE_BACKWARD,
    assert_close,
    lowered_ops,
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

import jaxconv

SPATIAL_CHARS = {1: "H", 2: "HW", 3: "DHW"}


def lax_reference(lhs, rhs, *args, **kwargs):
    """lax.conv_general_dilated, at HIGHEST precision unless the test asks for another."""
    kwargs.setdefault("precision", lax.Precision.HIGHEST)
    return lax.conv_general_dilated(lhs, rhs, *args, **kwargs)


def lax_on_cpu(lhs, rhs, *args, **kwargs):
    """lax.conv_general_dilated on the CPU device: the exact reference for integer convolutions on any backend."""
    return jax.jit(lambda a, b: lax.conv_general_dilated(a, b, *args, **kwargs))(*on_cpu(lhs, rhs))


def _x64(dtype):
    return jax.enable_x64(True) if needs_x64(dtype) else contextlib.nullcontext()


def _shape(spec, sizes):
    return tuple(sizes[c] for c in spec)


def _check_values_and_grads(lhs, rhs, kwargs, dtype="float32", seed=0):
    """Ours vs lax: values, then dL/dlhs and dL/drhs for a random cotangent; dtypes and shapes preserved."""
    ours = lambda lhs, rhs: jaxconv.conv_general_dilated(lhs, rhs, **kwargs)
    out_shape = jax.eval_shape(lambda lhs, rhs: lax_reference(lhs, rhs, **kwargs), lhs, rhs)
    assert jax.eval_shape(ours, lhs, rhs) == out_shape
    cotangent = random_array(np.random.default_rng(seed), out_shape.shape, out_shape.dtype)
    out, grads = value_and_grads(ours, (lhs, rhs), cotangent)
    high = reference_dtype(dtype)
    expected, expected_grads = value_and_grads(  # on the CPU device: cuDNN cannot do 4+ spatial dims
        lambda lhs, rhs: lax_reference(lhs, rhs, **kwargs),
        on_cpu(lhs.astype(high), rhs.astype(high)),
        *on_cpu(cotangent.astype(reference_dtype(cotangent.dtype))),
    )
    assert_close(out, expected, out.dtype, what="output")
    for name, grad, arg, expected_grad in zip(("lhs", "rhs"), grads, (lhs, rhs), expected_grads):
        assert grad.dtype == arg.dtype and grad.shape == arg.shape, name
        assert_close(grad, expected_grad, dtype, what=f"dL/d{name}")


# --- every parameter at once, drawn by hypothesis -------------------------------------


@st.composite
def general_convs(draw):
    """Any layout, lhs and rhs dilation, negative or string padding, feature or batch groups; empty outputs too."""
    n = draw(st.integers(1, 3))
    spatial = SPATIAL_CHARS[n]
    lhs_spec = "".join(draw(st.permutations("NC" + spatial)))
    rhs_spec = "".join(draw(st.permutations("OI" + spatial)))
    out_spec = "".join(draw(st.permutations("NC" + spatial)))
    groups = draw(st.integers(1, 2))
    feature_groups, batch_groups = (groups, 1) if draw(st.booleans()) else (1, groups)
    in_features = draw(st.integers(1, 2))
    sizes_lhs = dict(N=batch_groups * draw(st.integers(1, 2)), C=feature_groups * in_features)
    sizes_rhs = dict(O=groups * draw(st.integers(1, 2)), I=in_features)
    max_size = 4 if n == 3 else 7
    for c in spatial:
        sizes_lhs[c] = draw(st.integers(2, max_size))
        sizes_rhs[c] = draw(st.integers(1, 3))
    lhs_dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    if all(d == 1 for d in lhs_dilation) and draw(st.booleans()):
        padding = draw(st.sampled_from(["VALID", "SAME", "SAME_LOWER"]))
    else:
        padding = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(n))
    dimension_numbers = (lhs_spec, rhs_spec, out_spec)
    lhs_shape, rhs_shape = _shape(lhs_spec, sizes_lhs), _shape(rhs_spec, sizes_rhs)
    if draw(st.booleans()):
        dimension_numbers = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    kwargs = dict(
        window_strides=tuple(draw(st.integers(1, 2)) for _ in range(n)),
        padding=padding,
        lhs_dilation=lhs_dilation if draw(st.booleans()) or any(d > 1 for d in lhs_dilation) else None,
        rhs_dilation=tuple(draw(st.integers(1, 2)) for _ in range(n)),
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_groups,
        batch_group_count=batch_groups,
    )
    return lhs_shape, rhs_shape, kwargs


@settings(max_examples=25, deadline=None)
@given(case=general_convs(), seed=st.integers(0, 2**16))
def test_matches_lax(case, seed):
    lhs_shape, rhs_shape, kwargs = case
    rng = np.random.default_rng(seed)
    _check_values_and_grads(random_array(rng, lhs_shape), random_array(rng, rhs_shape), kwargs, seed=seed)


# --- named cases -------------------------------------------------------------------------


DIMENSION_NUMBERS = {
    "default": None,
    "NCHW": ("NCHW", "OIHW", "NCHW"),
    "NHWC": ("NHWC", "HWIO", "NHWC"),
    "mixed": ("NHWC", "OIHW", "NCHW"),
    "CNHW": ("CNHW", "IOHW", "NHCW"),
    "ConvDimensionNumbers": lax.ConvDimensionNumbers(
        lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)
    ),
}


@pytest.mark.parametrize("dimension_numbers", list(DIMENSION_NUMBERS.values()), ids=list(DIMENSION_NUMBERS))
def test_dimension_numbers(dimension_numbers):
    canonical = lax.conv_dimension_numbers((2, 4, 6, 5), (6, 2, 3, 2), dimension_numbers)
    lhs_perm, rhs_perm = canonical.lhs_spec, canonical.rhs_spec
    # Shapes in the layout dimension_numbers describe: N=2, C=4, H=6, W=5; O=6, I=2, kernel 3x2.
    lhs_shape = [0] * 4
    for size, axis in zip((2, 4, 6, 5), lhs_perm):
        lhs_shape[axis] = size
    rhs_shape = [0] * 4
    for size, axis in zip((6, 2, 3, 2), rhs_perm):
        rhs_shape[axis] = size
    rng = np.random.default_rng(1)
    lhs, rhs = random_array(rng, lhs_shape), random_array(rng, rhs_shape)
    kwargs = dict(
        window_strides=(2, 1),
        padding=((1, -1), (2, 0)),
        lhs_dilation=(1, 2),
        rhs_dilation=(2, 1),
        dimension_numbers=dimension_numbers,
        feature_group_count=2,
    )
    _check_values_and_grads(lhs, rhs, kwargs)


@pytest.mark.parametrize(
    "lhs_shape, rhs_shape, dimension_numbers",
    [
        ((2, 3, 9), (4, 3, 3), ("NCH", "OIH", "NCH")),
        ((2, 9, 3), (3, 3, 4), ("NHC", "HIO", "NHC")),
        ((1, 2, 4, 5, 3), (3, 2, 2, 3, 2), None),
        ((1, 4, 5, 3, 2), (2, 3, 2, 2, 3), ("NDHWC", "DHWIO", "NDHWC")),
    ],
    ids=["1d", "1d-NHC", "3d", "3d-NDHWC"],
)
def test_one_and_three_spatial_dims(lhs_shape, rhs_shape, dimension_numbers):
    rng = np.random.default_rng(2)
    n = len(lhs_shape) - 2
    kwargs = dict(
        window_strides=(2,) + (1,) * (n - 1),
        padding=((1, 0),) + ((-1, 1),) * (n - 1),
        lhs_dilation=(2,) * n,
        rhs_dilation=(1,) * (n - 1) + (2,),
        dimension_numbers=dimension_numbers,
    )
    _check_values_and_grads(random_array(rng, lhs_shape), random_array(rng, rhs_shape), kwargs)


def test_transposed_convolution_via_lhs_dilation():
    """lhs_dilation is the transposed convolution: lax.conv_transpose is built on it."""
    rng = np.random.default_rng(3)
    x, w = random_array(rng, (2, 5, 4, 3)), random_array(rng, (3, 3, 3, 6))  # NHWC, HWIO
    dn = ("NHWC", "HWIO", "NHWC")
    expected = lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=dn, precision=lax.Precision.HIGHEST)
    # conv_transpose with SAME padding, stride 2, 3x3 kernel: lhs_dilation 2 and pads (2, 1) per dim.
    out = jaxconv.conv_general_dilated(x, w, (1, 1), ((2, 1), (2, 1)), lhs_dilation=(2, 2), dimension_numbers=dn)
    assert_close(out, expected)


@pytest.mark.parametrize("batch_group_count, n", [(2, 4), (3, 3), (4, 4)])
def test_batch_group_count(batch_group_count, n):
    """Batch groups (the filter gradient of a grouped conv) and their own gradients."""
    rng = np.random.default_rng(4)
    lhs, rhs = random_array(rng, (n, 3, 6, 5)), random_array(rng, (2 * batch_group_count, 3, 3, 2))
    kwargs = dict(window_strides=(1, 2), padding=((1, 1), (0, -1)), batch_group_count=batch_group_count)
    _check_values_and_grads(lhs, rhs, kwargs)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_dtypes(dtype):
    with _x64(dtype):
        rng = np.random.default_rng(5)
        lhs, rhs = random_array(rng, (2, 6, 5, 4), dtype), random_array(rng, (3, 2, 2, 4), dtype)
        kwargs = dict(
            window_strides=(1, 2),
            padding="SAME",
            rhs_dilation=(1, 2),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=2,
        )
        _check_values_and_grads(lhs, rhs, kwargs, dtype)


# Integer contractions: XLA's dot where the backend has one, an exact multiply-reduce on GPUs (cuBLAS has none
# for most integer types); both strategies run here, the GPU one forced, against lax on the CPU device.
INTEGER_GEMMS = pytest.mark.parametrize("integer_gemm", ["gemm", "multiply_reduce"])


@pytest.fixture
def force_integer_gemm(monkeypatch):
    def force(strategy):
        monkeypatch.setattr("jaxconv._api.contraction_for", lambda *args: strategy)

    return force


@INTEGER_GEMMS
@pytest.mark.parametrize(
    "dtype, preferred, high",
    [
        ("int32", None, 5),
        ("int8", "int32", 5),
        ("int8", None, 100),  # products and sums wrap in int8, as lax's do
        ("uint8", None, 200),
        ("int16", "float32", 5),
        ("int16", None, 30000),
        ("uint16", "uint32", 5),
        ("int64", None, 5),
        ("bool", None, 2),
        ("bool", "int32", 2),
        ("bool", "float32", 2),
    ],
)
def test_integer_inputs_forward_exact(force_integer_gemm, integer_gemm, dtype, preferred, high):
    force_integer_gemm(integer_gemm)
    rng = np.random.default_rng(6)
    low = 0 if dtype in ("uint8", "uint16", "bool") else -high
    with jax.enable_x64(dtype == "int64"):
        lhs = jnp.asarray(rng.integers(low, high, (2, 3, 6, 5)), dtype)
        rhs = jnp.asarray(rng.integers(low, high, (4, 3, 3, 2)), dtype)
        kwargs = dict(
            window_strides=(2, 1), padding=((1, 0), (2, 2)), lhs_dilation=(1, 2), preferred_element_type=preferred
        )
        out = jaxconv.conv_general_dilated(lhs, rhs, **kwargs)
        expected = lax_on_cpu(lhs, rhs, **kwargs)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


@INTEGER_GEMMS
@pytest.mark.parametrize("groups", [dict(feature_group_count=2), dict(batch_group_count=2)])
def test_integer_grouped_nhwc(force_integer_gemm, integer_gemm, groups):
    force_integer_gemm(integer_gemm)
    rng = np.random.default_rng(8)
    in_features = 2 if "feature_group_count" in groups else 4
    lhs = jnp.asarray(rng.integers(-3, 4, (4, 5, 5, 4)), jnp.int32)
    rhs = jnp.asarray(rng.integers(-3, 4, (3, 3, in_features, 6)), jnp.int32)
    kwargs = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) | groups
    out = jaxconv.conv_general_dilated(lhs, rhs, **kwargs)
    expected = lax_on_cpu(lhs, rhs, **kwargs)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


@pytest.mark.parametrize("preferred", ["int32", "float32"])
def test_bool_inputs_with_preferred_element_type(preferred):
    lhs, rhs = jnp.ones((1, 2, 5), bool), jnp.ones((3, 2, 2), bool)
    expected = lax_on_cpu(lhs, rhs, (1,), "VALID", preferred_element_type=preferred)
    out = jaxconv.conv_general_dilated(lhs, rhs, (1,), "VALID", preferred_element_type=preferred)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_integer_gemm_strategy_per_platform():
    from jaxconv._contraction import contraction_for

    strategies = [contraction_for(p, jnp.int8, 64, 64) for p in ("cpu", "tpu", "gpu", "cuda", "rocm")]
    assert strategies == ["gemm", "gemm"] + ["multiply_reduce"] * 3


def test_preferred_element_type_bf16_to_float32():
    rng = np.random.default_rng(7)
    lhs, rhs = random_array(rng, (2, 4, 6, 6), jnp.bfloat16), random_array(rng, (5, 4, 3, 3), jnp.bfloat16)
    kwargs = dict(window_strides=(1, 1), padding="SAME", preferred_element_type=jnp.float32)
    ours = lambda lhs, rhs: jaxconv.conv_general_dilated(lhs, rhs, **kwargs)
    out = ours(lhs, rhs)
    assert out.dtype == jnp.float32
    assert_close(out, lax_reference(lhs, rhs, **kwargs), jnp.float32)
    cotangent = random_array(rng, out.shape, jnp.float32)
    _, grads = value_and_grads(ours, (lhs, rhs), cotangent)
    _, expected = value_and_grads(
        lambda lhs, rhs: lax_reference(lhs, rhs, **kwargs),
        (lhs.astype(jnp.float32), rhs.astype(jnp.float32)),
        cotangent,
    )
    for grad, arg, expected_grad in zip(grads, (lhs, rhs), expected):
        assert grad.dtype == jnp.bfloat16 and grad.shape == arg.shape
        assert_close(grad, expected_grad, jnp.bfloat16)


@pytest.mark.parametrize(
    "precision",
    [
        None,
        lax.Precision.HIGHEST,
        "highest",
        "default",
        (lax.Precision.HIGHEST, lax.Precision.DEFAULT),
        ("high", "high"),
        "tensorfloat32",
        lax.DotAlgorithmPreset.F32_F32_F32,
        "F32_F32_F32",  # a preset's name, as lax takes it
    ],
)
def test_precision(precision):
    rng = np.random.default_rng(8)
    lhs, rhs = random_array(rng, (2, 3, 5, 5)), random_array(rng, (4, 3, 2, 2))
    out = jaxconv.conv_general_dilated(lhs, rhs, (1, 1), "VALID", precision=precision)
    assert_close(out, lax_reference(lhs, rhs, (1, 1), "VALID"))
    grad = jax.grad(lambda rhs: jaxconv.conv_general_dilated(lhs, rhs, (1, 1), "VALID", precision=precision).sum())
    assert_close(grad(rhs), jax.grad(lambda rhs: lax_reference(lhs, rhs, (1, 1), "VALID").sum())(rhs))


@pytest.mark.parametrize("precision", ["best", (lax.Precision.HIGHEST, None), (None, None), "f32_f32_f32"])
def test_precision_refuses_what_lax_refuses(precision):
    lhs, rhs = jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 3, 3))
    with pytest.raises(ValueError):
        lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID", precision=precision)
    with pytest.raises(ValueError, match="precision must be None, a lax.Precision or its name"):
        jaxconv.conv_general_dilated(lhs, rhs, (1, 1), "VALID", precision=precision)


@pytest.mark.parametrize(
    "lhs_shape, rhs_shape, padding",
    [
        ((0, 3, 5, 5), (4, 3, 3, 3), "VALID"),  # N = 0
        ((2, 0, 5, 5), (4, 0, 3, 3), "VALID"),  # C = 0
        ((2, 3, 5, 5), (0, 3, 3, 3), "SAME"),  # FN = 0
        ((2, 3, 5, 5), (4, 3, 7, 3), "VALID"),  # kernel larger than the input: empty output
        ((2, 3, 5, 5), (4, 3, 3, 3), ((-3, 0), (0, 0))),  # cropped to fewer rows than the kernel
    ],
    ids=["N=0", "C=0", "FN=0", "kernel>input", "cropped"],
)
def test_zero_size(lhs_shape, rhs_shape, padding):
    lhs, rhs = jnp.ones(lhs_shape), jnp.ones(rhs_shape)
    out = jaxconv.conv_general_dilated(lhs, rhs, (1, 1), padding)
    expected = lax.conv_general_dilated(lhs, rhs, (1, 1), padding)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    loss = lambda conv_fn: lambda lhs, rhs: jnp.sum(conv_fn(lhs, rhs, (1, 1), padding) ** 2)
    grads = jax.grad(loss(jaxconv.conv_general_dilated), argnums=(0, 1))(lhs, rhs)
    expected_grads = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(lhs, rhs)
    for grad, arg, expected_grad in zip(grads, (lhs, rhs), expected_grads):
        assert grad.shape == arg.shape and grad.dtype == arg.dtype
        np.testing.assert_array_equal(np.asarray(grad), np.asarray(expected_grad))


def test_four_spatial_dims():
    rng = np.random.default_rng(9)
    lhs, rhs = random_array(rng, (1, 2, 3, 4, 3, 4)), random_array(rng, (2, 2, 2, 2, 1, 3))
    kwargs = dict(window_strides=(1, 2, 1, 1), padding=((0, 1), (1, 0), (0, 0), (1, 1)))
    _check_values_and_grads(lhs, rhs, kwargs)


def test_zero_spatial_dims():
    rng = np.random.default_rng(10)
    lhs, rhs = random_array(rng, (2, 4)), random_array(rng, (3, 4))
    _check_values_and_grads(lhs, rhs, dict(window_strides=(), padding="VALID"))


# --- a drop-in ---------------------------------------------------------------------------


def test_signature_matches_lax():
    """Every keyword of the installed lax (out_sharding included), so the next jax release cannot break flax.nnx."""
    ours = list(inspect.signature(jaxconv.conv_general_dilated).parameters.values())
    theirs = list(inspect.signature(lax.conv_general_dilated).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours] == [(p.name, p.kind, p.default) for p in theirs]


def _layer(x, w, *, conv_general_dilated=lax.conv_general_dilated):
    """A layer in the style of flax.linen.Conv, which takes the convolution as an argument."""
    by_keyword = conv_general_dilated(
        x,
        w,
        window_strides=(1, 1),
        padding="SAME",
        lhs_dilation=(1, 1),
        rhs_dilation=(1, 1),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=1,
        batch_group_count=1,
        precision=None,
        preferred_element_type=None,
    )
    by_position = conv_general_dilated(
        x, w, (2, 1), ((1, 1), (0, 0)), (1, 1), (1, 2), ("NHWC", "HWIO", "NHWC"), 1, 1, lax.Precision.HIGHEST, None
    )
    return by_keyword, by_position


def test_drop_in_for_lax():
    rng = np.random.default_rng(11)
    x, w = random_array(rng, (2, 6, 5, 3)), random_array(rng, (3, 2, 3, 4))
    for actual, expected in zip(_layer(x, w, conv_general_dilated=jaxconv.conv_general_dilated), _layer(x, w)):
        assert_close(actual, expected)
    loss = lambda conv: lambda x: sum(jnp.sum(y**2) for y in _layer(x, w, conv_general_dilated=conv))
    grad = jax.jit(jax.grad(loss(jaxconv.conv_general_dilated)))(x)
    assert_close(grad, jax.jit(jax.grad(loss(lax.conv_general_dilated)))(x))


def test_gradient_jaxpr_has_no_conv_primitive():
    rng = np.random.default_rng(12)
    lhs, rhs = random_array(rng, (4, 5, 5, 2)), random_array(rng, (3, 3, 2, 4))
    kwargs = dict(lhs_dilation=(2, 1), dimension_numbers=("NHWC", "HWIO", "NHWC"), batch_group_count=2)
    loss = lambda lhs, rhs: jnp.sum(jaxconv.conv_general_dilated(lhs, rhs, (1, 2), ((1, 1), (0, 1)), **kwargs) ** 2)
    names = primitive_names(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(lhs, rhs))
    assert "conv_general_dilated" not in names and NOTE_BACKWARD <= names
    hlo = lowered_ops(jax.grad(loss, argnums=(0, 1)), lhs, rhs)
    assert "stablehlo.convolution" not in hlo and "stablehlo.gather" in hlo and "stablehlo.dot_general" in hlo


def test_jit_and_vmap():
    rng = np.random.default_rng(13)
    lhs, rhs = random_array(rng, (3, 2, 3, 6, 5)), random_array(rng, (4, 3, 2, 2))
    f = lambda conv: lambda lhs: conv(lhs, rhs, (1, 2), "SAME_LOWER", rhs_dilation=(2, 1))
    out = jax.jit(jax.vmap(f(jaxconv.conv_general_dilated)))(lhs)
    assert_close(out, jax.vmap(f(lax_reference))(lhs))


# --- errors: wherever lax raises, ours raises ValueError/TypeError in Python -----------


def _lhs(shape=(2, 4, 5, 5)):
    return jnp.ones(shape)


ERROR_CASES = {
    "rank-mismatch": ((_lhs(), jnp.ones((6, 4, 3)), (1, 1), "VALID"), {}, TypeError, "same rank"),
    "rank-below-2": ((jnp.ones((4,)), jnp.ones((4,)), (), "VALID"), {}, TypeError, r"rank >= 2"),
    "dimension-numbers-chars": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "VALID"),
        dict(dimension_numbers=("NCHW", "OIHW", "NCXW")),
        TypeError,
        "dimension_numbers",
    ),
    "dimension-numbers-length": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "VALID"),
        dict(dimension_numbers=("NCH", "OIH", "NCH")),
        TypeError,
        "dimension_numbers",
    ),
    "dtype-mismatch": (
        (_lhs(), jnp.ones((6, 4, 3, 3), jnp.float16), (1, 1), "VALID"),
        {},
        TypeError,
        "same dtype, got float32 and float16",
    ),
    "feature-groups-vs-lhs": (
        (_lhs(), jnp.ones((6, 2, 3, 3)), (1, 1), "VALID"),
        dict(feature_group_count=3),
        ValueError,
        r"lhs feature size 4 \(lhs.shape=\(2, 4, 5, 5\)\) divided by feature_group_count=3",
    ),
    "feature-groups-vs-rhs": (
        (_lhs(), jnp.ones((5, 2, 3, 3)), (1, 1), "VALID"),
        dict(feature_group_count=2),
        ValueError,
        r"rhs output feature size 5 \(rhs.shape=\(5, 2, 3, 3\)\) must be a multiple",
    ),
    "batch-groups-vs-batch": (
        (_lhs((3, 4, 5, 5)), jnp.ones((6, 4, 3, 3)), (1, 1), "VALID"),
        dict(batch_group_count=2),
        ValueError,
        r"batch_group_count=2 must divide the lhs batch size 3",
    ),
    "batch-groups-vs-rhs": (
        (_lhs(), jnp.ones((5, 4, 3, 3)), (1, 1), "VALID"),
        dict(batch_group_count=2),
        ValueError,
        r"rhs output feature size 5 .* must be a multiple",
    ),
    "both-groups": (
        (_lhs(), jnp.ones((4, 2, 3, 3)), (1, 1), "VALID"),
        dict(feature_group_count=2, batch_group_count=2),
        ValueError,
        "at most one of feature_group_count=2 and batch_group_count=2",
    ),
    "zero-groups": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "VALID"),
        dict(feature_group_count=0),
        ValueError,
        "feature_group_count must be >= 1, got 0",
    ),
    "negative-padding-too-large": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), ((-3, -3), (0, 0))),
        {},
        ValueError,
        r"crops more than the input holds: input spatial shape \(5, 5\)",
    ),
    "zero-size-kernel": (
        (_lhs(), jnp.ones((6, 4, 0, 3)), (1, 1), "VALID"),
        {},
        ValueError,
        r"kernel spatial shape must be positive, got \(0, 3\)",
    ),
    "string-padding-with-lhs-dilation": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "SAME"),
        dict(lhs_dilation=(2, 2)),
        ValueError,
        "string padding 'SAME' is not defined with lhs_dilation",
    ),
    "preferred-int-for-float": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "VALID"),
        dict(preferred_element_type=jnp.int32),
        TypeError,
        "preferred_element_type int32 is incompatible with input dtype float32",
    ),
    "preferred-narrower": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "VALID"),
        dict(preferred_element_type=jnp.float16),
        TypeError,
        "must not be narrower",
    ),
    "preferred-unsigned-for-signed": (
        (jnp.ones((2, 4, 5), jnp.int32), jnp.ones((6, 4, 3), jnp.int32), (1,), "VALID"),
        dict(preferred_element_type=jnp.uint32),
        TypeError,
        "must be signed",
    ),
    "zero-stride": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (0, 1), "VALID"),
        {},
        ValueError,
        r"window_strides must be >= 1 in every dimension, got \(0, 1\)",
    ),
    "strides-length": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1,), "VALID"),
        {},
        ValueError,
        r"window_strides must have 2 entries for lhs.shape=\(2, 4, 5, 5\)",
    ),
    "zero-rhs-dilation": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "VALID"),
        dict(rhs_dilation=(0, 1)),
        TypeError,
        "dilation must be >= 1",
    ),
    "unknown-padding-string": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), "FULL"),
        {},
        ValueError,
        "padding must be one of",
    ),
    "padding-count": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), ((1, 1),)),
        {},
        TypeError,
        r"padding must have one entry per spatial dimension \(2\)",
    ),
    "padding-not-pairs": (
        (_lhs(), jnp.ones((6, 4, 3, 3)), (1, 1), (1, 1)),
        {},
        ValueError,
        r"padding must be a string or a sequence of \(low, high\) int pairs",
    ),
}


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # lax's shape rule, on stride 0
@pytest.mark.parametrize("case", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_errors_where_lax_raises(case):
    args, kwargs, error, match = case
    # lax rejects these arguments too (some only when XLA lowers them) ...
    with pytest.raises(Exception):  # noqa: B017
        jax.jit(lambda lhs, rhs: lax.conv_general_dilated(lhs, rhs, *args[2:], **kwargs))(*args[:2])
    # ... ours rejects them in Python, with a message naming the argument, eagerly and under jit.
    with pytest.raises(error, match=match) as info:
        jaxconv.conv_general_dilated(*args, **kwargs)
    assert "lower" not in str(info.value)
    with pytest.raises(error, match=match):
        jax.jit(lambda lhs, rhs: jaxconv.conv_general_dilated(lhs, rhs, *args[2:], **kwargs))(*args[:2])


@pytest.mark.parametrize("as_spec", [True, False], ids=["PartitionSpec", "NamedSharding"])
def test_out_sharding_is_honoured_as_lax_does(as_spec):
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Explicit,))
    sharding = P("data") if as_spec else NamedSharding(mesh, P("data"))
    lhs, rhs = jnp.ones((2, 3, 6, 6)), jnp.ones((4, 3, 3, 3))
    with jax.set_mesh(mesh):
        call = lambda conv: jax.jit(lambda a, b: conv(a, b, (1, 1), "SAME", out_sharding=sharding))(lhs, rhs)
        ours, theirs = call(jaxconv.conv_general_dilated), call(lax.conv_general_dilated)
    assert ours.sharding == theirs.sharding and ours.sharding.spec[0] == "data"
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize(
    "out_sharding, error, match",
    [
        ("bogus", TypeError, "out_sharding must be None, a NamedSharding or a PartitionSpec, got 'bogus'"),
        (jax.sharding.PartitionSpec(), ValueError, r"out_sharding=P\w*\(\) is a PartitionSpec, which needs a mesh"),
    ],
)
def test_a_bad_out_sharding_is_refused_before_the_conv_runs(monkeypatch, out_sharding, error, match):
    lhs, rhs = jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 3, 3))
    with pytest.raises((TypeError, ValueError)):
        lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID", out_sharding=out_sharding)
    monkeypatch.setattr("jaxconv._lax_compat._apply_general", lambda *args: pytest.fail("the conv ran"))
    with pytest.raises(error, match=match):
        jaxconv.conv_general_dilated(lhs, rhs, (1, 1), "VALID", out_sharding=out_sharding)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(window_strides=None), TypeError, "window_strides must be a sequence of 2 ints"),
        (dict(window_strides=2), TypeError, "window_strides must be a sequence of 2 ints"),
        (dict(lhs_dilation=2), TypeError, "lhs_dilation must be a sequence of 2 ints"),
        (dict(rhs_dilation=(1, 0)), TypeError, r"rhs_dilation must be >= 1 in every dimension, got \(1, 0\)"),
        (dict(rhs_dilation=(1.0, 1)), TypeError, "rhs_dilation must be an int, got float 1.0"),
        (dict(padding=((1.5, 1), (0, 0))), ValueError, r"padding must be a string or a sequence of \(low, high\) int"),
        (dict(precision=[lax.Precision.HIGHEST] * 3), ValueError, "precision must be None"),
    ],
)
def test_lax_arguments_are_named_as_lax_names_them(kwargs, error, match):
    args = dict(window_strides=(1, 1), padding="VALID") | kwargs
    with pytest.raises(error, match=match):
        jaxconv.conv_general_dilated(jnp.ones((2, 4, 5, 5)), jnp.ones((6, 4, 3, 3)), **args)


def test_precision_pairs_apply_to_lhs_and_rhs_as_in_lax():
    """(lhs, rhs) means (x, w): the GEMMs that take w first get the pair swapped."""
    lhs, rhs = jnp.ones((2, 3, 5, 5)), jnp.ones((4, 3, 3, 3))
    pair = (lax.Precision.HIGHEST, lax.Precision.DEFAULT)
    hlo = jax.jit(lambda a, b: jaxconv.conv_general_dilated(a, b, (1, 1), "VALID", precision=pair)).lower(lhs, rhs)
    text = hlo.as_text()
    # The forward GEMM's left operand is w (F_f^T), so it must carry DEFAULT and phi HIGHEST.
    assert "precision = [DEFAULT, HIGHEST]" in text or "precision_config = [DEFAULT, HIGHEST]" in text, text[-2000:]
