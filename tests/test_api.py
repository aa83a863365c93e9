"""Tests for jaxconv._api: the friendly API's argument checks, conv1d/2d/3d, and lax_conv, the reference backend."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import assert_close, lax_conv_reference, random_array

import jaxconv

CONVS = pytest.mark.parametrize("conv_fn", [jaxconv.conv, jaxconv.lax_conv], ids=["conv", "lax_conv"])

X, W = jnp.ones((2, 4, 5, 5)), jnp.ones((6, 4, 3, 3))


# --- the checks, shared by conv and lax_conv --------------------------------------


@CONVS
@pytest.mark.parametrize("shape", [(4, 5), (2, 4, 5, 5, 5, 5), (5,)])
def test_x_wrong_rank(conv_fn, shape):
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, \*spatial\).*got shape " + re.escape(str(shape))):
        conv_fn(jnp.ones(shape), jnp.ones(shape))


@CONVS
def test_w_wrong_rank(conv_fn):
    with pytest.raises(ValueError, match=r"x has shape \(2, 4, 5, 5\), w has shape \(6, 4, 3\)"):
        conv_fn(X, jnp.ones((6, 4, 3)))


@pytest.mark.parametrize(
    "conv_nd, rank", [(jaxconv.conv1d, 3), (jaxconv.conv2d, 4), (jaxconv.conv3d, 5)], ids=["1d", "2d", "3d"]
)
def test_conv_nd_checks_rank(conv_nd, rank):
    x = jnp.ones((1, 1) + (4,) * (rank - 1))  # one spatial dim too many
    with pytest.raises(ValueError, match=rf"conv{rank - 2}d expects x of rank {rank} .*got shape \(1, 1"):
        conv_nd(x, jnp.ones((1, 1) + (2,) * (rank - 1)))


@CONVS
def test_channel_mismatch(conv_fn):
    with pytest.raises(
        ValueError,
        match=r"x has C=4 channels \(x.shape=\(2, 4, 5, 5\)\) but w expects groups \* "
        r"w.shape\[1\] = 1 \* 3 = 3",
    ):
        conv_fn(X, jnp.ones((6, 3, 3, 3)))


@CONVS
def test_channel_mismatch_with_groups(conv_fn):
    with pytest.raises(ValueError, match=r"groups \* w.shape\[1\] = 2 \* 4 = 8 \(w.shape=\(6, 4, 3, 3\)\)"):
        conv_fn(X, W, groups=2)


@CONVS
def test_filters_not_divisible_by_groups(conv_fn):
    with pytest.raises(ValueError, match=r"w has 6 filters \(w.shape=\(6, 1, 3, 3\)\), not divisible by groups=4"):
        conv_fn(X, jnp.ones((6, 1, 3, 3)), groups=4)


@CONVS
@pytest.mark.parametrize("groups, error", [(0, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError)])
def test_bad_groups(conv_fn, groups, error):
    with pytest.raises(error, match="groups must be"):
        conv_fn(X, W, groups=groups)


@CONVS
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), None),
        (dict(w_shape=(6, 4, 6, 3)), r"kernel of spatial shape \(6, 3\)"),
        (dict(dilation=3), r"dilated to \(7, 7\)\) is larger than the padded input \(5, 5\)"),
        (dict(padding=((-2, -1), (0, 0))), r"larger than the padded input \(2, 5\)"),
    ],
    ids=["ok", "kernel", "dilated", "cropped"],
)
def test_kernel_larger_than_padded_input(conv_fn, kwargs, match):
    kwargs = dict(kwargs)
    w = jnp.ones(kwargs.pop("w_shape", (6, 4, 3, 3)))
    if match is None:  # a 3x3 kernel on 5x5 fits
        assert conv_fn(X, w, **kwargs).shape == (2, 6, 3, 3)
        return
    with pytest.raises(ValueError, match=match):
        conv_fn(X, w, **kwargs)


@CONVS
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stride=0), "stride must be >= 1"),
        (dict(stride=(1, -2)), "stride must be >= 1"),
        (dict(dilation=0), "dilation must be >= 1"),
        (dict(dilation=(0, 1)), "dilation must be >= 1"),
        (dict(stride=(1, 1, 1)), r"stride must have one entry per spatial dimension \(2\), got 3"),
        (dict(dilation=(1,)), r"dilation must have one entry per spatial dimension \(2\), got 1"),
        (dict(padding=(1, 1, 1)), r"padding must have one entry per spatial dimension \(2\), got 3"),
        (dict(padding=((1, 1),)), r"padding must have one entry per spatial dimension \(2\), got 1"),
        (dict(padding="FULL"), "padding must be one of .*got 'FULL'"),
        (dict(padding=((1, 2, 3), (0, 0))), r"\(lo, hi\) pairs"),
        (dict(padding=((-3, -3), (0, 0))), r"crops more than the input holds: input spatial shape \(5, 5\)"),
        (dict(col2im_method="loop"), "col2im_method must be one of"),
    ],
)
def test_bad_window_arguments(conv_fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        conv_fn(X, W, **kwargs)


@CONVS
@pytest.mark.parametrize("stride", [1.0, "1", (1, None)])
def test_non_int_stride(conv_fn, stride):
    with pytest.raises(TypeError, match="stride must be an int"):
        conv_fn(X, W, stride=stride)


@CONVS
@pytest.mark.parametrize("b_shape", [(5,), (6, 1), ()])
def test_bias_wrong_shape(conv_fn, b_shape):
    with pytest.raises(ValueError, match=r"b must have shape \(FN,\) = \(6,\) for w.shape=\(6, 4, 3, 3\), got"):
        conv_fn(X, W, jnp.ones(b_shape))


@CONVS
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
@pytest.mark.parametrize("which", ["x", "w", "b"])
def test_integer_and_bool_inputs(conv_fn, dtype, which):
    args = dict(x=X, w=W, b=jnp.ones(6))
    args[which] = args[which].astype(dtype)
    with pytest.raises(TypeError, match=f"{which} must be floating or complex to differentiate, got dtype"):
        conv_fn(args["x"], args["w"], args["b"])


@CONVS
@pytest.mark.parametrize(
    "dtypes, match",
    [
        ((jnp.float32, jnp.float16, None), "got x float32, w float16"),
        ((jnp.bfloat16, jnp.bfloat16, jnp.float32), "got x bfloat16, w bfloat16, b float32"),
        ((jnp.float32, jnp.complex64, None), "got x float32, w complex64"),
    ],
)
def test_mixed_dtypes(conv_fn, dtypes, match):
    b = None if dtypes[2] is None else jnp.ones(6, dtypes[2])
    with pytest.raises(TypeError, match=f"x, w and b must share a dtype, {match}"):
        conv_fn(X.astype(dtypes[0]), W.astype(dtypes[1]), b)


@CONVS
def test_errors_are_raised_before_tracing(conv_fn):
    """Inside jit the checks still run on static shapes and name them, instead of failing in XLA."""
    with pytest.raises(ValueError, match=r"x has C=4 channels \(x.shape=\(2, 4, 5, 5\)\)"):
        jax.jit(conv_fn)(X, jnp.ones((6, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"kernel of spatial shape \(7, 7\)"):
        jax.jit(lambda x, w: conv_fn(x, w, padding=0))(X, jnp.ones((6, 4, 7, 7)))
    with pytest.raises(ValueError, match=r"x must have shape .*got shape \(4, 5\)"):
        jax.eval_shape(conv_fn, jnp.ones((4, 5)), jnp.ones((4, 5)))


@CONVS
@pytest.mark.parametrize(
    "preferred, match",
    [
        ("int32", "is incompatible with input dtype float32"),
        ("bfloat16", "must not be narrower than input dtype float32"),
    ],
)
def test_preferred_element_type_is_checked(conv_fn, preferred, match):
    with pytest.raises(TypeError, match=f"preferred_element_type {preferred} {match}"):
        jax.eval_shape(lambda x, w: conv_fn(x, w, preferred_element_type=preferred), X, jnp.ones((6, 4, 3, 3)))


def test_lax_drop_in_checks_before_any_array_work(caplog):
    """conv_general_dilated validates on shapes alone: a bad argument compiles nothing, not even a transpose."""
    lhs, rhs = jax.block_until_ready((jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))))
    with jax.log_compiles(True), caplog.at_level("WARNING"):
        with pytest.raises(ValueError, match="window_strides must be >= 1"):
            jaxconv.conv_general_dilated(lhs, rhs, (0, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()] == []


# --- lax_conv: the reference backend ---------------------------------------------


def test_lax_conv_matches_lax_and_conv():
    rng = np.random.default_rng(0)
    x, w, b = random_array(rng, (2, 4, 6, 5)), random_array(rng, (6, 2, 3, 2)), random_array(rng, (6,))
    kwargs = dict(stride=(2, 1), padding=((1, 0), (-1, 2)), dilation=(1, 2), groups=2)
    expected = lax_conv_reference(x, w, b, **kwargs)
    assert_close(jaxconv.lax_conv(x, w, b, **kwargs), expected)
    assert_close(jaxconv.conv(x, w, b, **kwargs), expected)
    assert_close(
        jaxconv.lax_conv(x, w, b, padding="same_lower", groups=2),
        lax_conv_reference(x, w, b, padding="SAME_LOWER", groups=2),
    )


def test_lax_conv_supports_forward_mode():
    rng = np.random.default_rng(1)
    x, w = random_array(rng, (1, 2, 5)), random_array(rng, (3, 2, 2))
    _, tangent = jax.jvp(lambda x: jaxconv.lax_conv(x, w, padding=1), (x,), (x,))
    assert_close(tangent, jaxconv.conv(x, w, padding=1))  # linear in x


# --- static arguments: no two different calls share one compiled function (issue 12.1) -----------


def _x64_calls():
    x, w = jnp.ones((1, 1, 4, 4), jnp.float32), jnp.ones((1, 1, 3, 3), jnp.float32)
    general = lambda x, w, **kw: jaxconv.conv_general_dilated(x, w, (1, 1), "VALID", **kw)
    return x, w, [jaxconv.conv2d, jaxconv.conv, jaxconv.lax_conv, general]


@pytest.mark.parametrize("order", ["plain-first", "float64-first"])
def test_preferred_float64_and_none_never_share_an_executable(order):
    """np.dtype('float64') == None is True in NumPy: a dtype in a static spec made these two calls collide."""
    with jax.enable_x64(True):
        x, w, fns = _x64_calls()
        for fn in fns:
            calls = [({}, jnp.float32), (dict(preferred_element_type=jnp.float64), jnp.float64)]
            for kwargs, expected in calls if order == "plain-first" else calls[::-1]:
                assert fn(x, w, **kwargs).dtype == expected, (fn, kwargs)


def test_every_static_spec_field_is_safe_to_compare():
    """Each static field holds ints, strings, tuples or None, never a NumPy dtype or array."""
    from jaxconv._api import conv_spec

    x, w = jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 3, 3))
    options = dict(stride=1, padding=0, dilation=1, groups=1)
    plain = conv_spec(x, w, None, **options)
    wide = conv_spec(x, w, None, preferred_element_type=jnp.float32, **options)
    assert plain != wide
    leaves = jax.tree.leaves(dataclasses.astuple(wide))
    assert all(isinstance(v, (int, str, type(None))) for v in leaves), leaves
    with pytest.raises(TypeError, match="preferred_element_type must be a dtype name or None"):
        dataclasses.replace(plain, preferred_element_type=np.dtype("float64"))


# --- argument kinds: NumPy ints accepted, non-arrays refused by name (issue 12.8) ---------------


def test_numpy_integer_arrays_and_scalars_are_accepted():
    x, w = jnp.ones((2, 3, 9, 9)), jnp.ones((4, 3, 3, 3))
    expected = jaxconv.conv2d(x, w, stride=(2, 1), padding=((1, 1), (2, 2)), max_cols_bytes=1000)
    actual = jaxconv.conv2d(
        x, w, stride=np.array([2, 1]), padding=np.array([1, 2]), max_cols_bytes=np.int64(1000), groups=np.int32(1)
    )
    assert bool((actual == expected).all())
    assert jaxconv.conv2d(x, w, stride=jnp.array(2)).shape == jaxconv.conv2d(x, w, stride=2).shape


@pytest.mark.parametrize("conv_fn", [jaxconv.conv2d, jaxconv.lax_conv])
@pytest.mark.parametrize(
    "which, value, match",
    [
        ("x", None, "x must be an array, got None"),
        ("w", None, "w must be an array, got None"),
        ("x", [[[[1.0, 2.0]]], [[[1.0]]]], "x must be a rectangular array of numbers, got a ragged list"),
        ("w", np.array([["a"]]), "w must be an array of numbers, got dtype <U1"),
        ("b", "bias", "b must be an array, got 'bias'"),
    ],
)
def test_non_arrays_are_refused_by_name(conv_fn, which, value, match):
    args = dict(x=jnp.ones((1, 1, 4, 4)), w=jnp.ones((1, 1, 3, 3)), b=None) | {which: value}
    with pytest.raises(TypeError, match=match.replace("[", r"\[")):
        conv_fn(args["x"], args["w"], args["b"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(stride=np.array([1.0, 1.0])), TypeError, "stride must be an int, got"),
        (dict(max_cols_bytes=1e6), TypeError, "max_cols_bytes must be an int, got float"),
        (dict(max_cols_bytes=0), ValueError, "max_cols_bytes must be >= 1, got 0"),
        (dict(max_cols_bytes="lots"), ValueError, "max_cols_bytes must be a positive int, None or 'auto'"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
    ],
)
def test_bad_options_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxconv.conv2d(jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 3, 3)), **kwargs)


def test_lax_conv_takes_conv_keywords_only():
    with pytest.raises(TypeError, match=r"lax_conv\(\) got unexpected keyword arguments \['strides'\]"):
        jaxconv.lax_conv(X, W, strides=2)
    assert jaxconv.lax_conv(X, W, stride=2, padding="SAME", backend="pallas").shape == (2, 6, 3, 3)


@pytest.mark.parametrize("name", ["padding", "stride", "dilation", "groups"])
def test_a_traced_option_is_refused_by_name(name):
    """Options shape the output, so they must be known when tracing: a traced one is named, not a JAX error."""
    value = jnp.array([1, 1]) if name in ("padding", "stride", "dilation") else jnp.array(1)
    with pytest.raises(TypeError, match=f"^{name} must be"):
        jax.jit(lambda x, v: jaxconv.conv(x, jnp.ones((1, 1, 3, 3)), **{name: v}))(jnp.ones((1, 1, 4, 4)), value)
