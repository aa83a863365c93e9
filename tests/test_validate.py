"""Tests for jaxconv._validate: the one set of argument checks the core, the drop-in and the CLIs share."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv._validate import as_array, as_dtype, as_finite, as_int, as_shape, check_choice, dtype_name, freeze, ntuple

# --- ntuple: ints or per-dimension ints, as in equinox ----------------------------------------------------------


def test_ntuple_int_repeats_over_dims():
    assert ntuple(2, 3, "stride") == (2, 2, 2)
    assert ntuple(np.int64(3), 2, "stride") == (3, 3)


def test_ntuple_per_dim_ints():
    assert ntuple((1, 2, 3), 3, "stride") == (1, 2, 3)
    assert ntuple([4, 5], 2, "dilation") == (4, 5)
    assert ntuple((np.int32(2),), 1, "dilation") == (2,)
    assert all(type(v) is int for v in ntuple((np.int32(2), 3), 2, "dilation"))


def test_ntuple_wrong_length():
    with pytest.raises(ValueError, match=r"stride must have one entry per spatial dimension \(2\), got 3"):
        ntuple((1, 1, 1), 2, "stride")


@pytest.mark.parametrize("value", [0, -1, (1, 0)])
def test_ntuple_below_minimum(value):
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        ntuple(value, 2, "dilation")


def test_ntuple_minimum_none_allows_negative():
    assert ntuple(-2, 2, "offset", minimum=None) == (-2, -2)


@pytest.mark.parametrize("value", [1.0, True, "2", (1, 1.5), None])
def test_ntuple_non_int(value):
    with pytest.raises(TypeError, match="stride must be an int"):
        ntuple(value, 2, "stride")


def test_ntuple_accepts_integer_arrays_and_refuses_float_ones():
    assert ntuple(np.array([1, 2]), 2, "stride") == (1, 2)
    assert ntuple(np.array(2), 2, "stride") == (2, 2)
    assert ntuple(jnp.array([3, 1]), 2, "stride") == (3, 1)
    with pytest.raises(TypeError, match="stride must be an int, got"):
        ntuple(np.array([1.0, 2.0]), 2, "stride")


# --- as_int ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, np.int64(3), np.int8(3), np.array(3), jnp.array(3)])
def test_as_int_accepts_int_likes(value):
    assert as_int(value, "n") == 3 and type(as_int(value, "n")) is int


@pytest.mark.parametrize(
    "value", [6.5, 6.0, np.float32(2), True, np.bool_(True), "3", None, np.array([3]), jnp.array(3.0)]
)
def test_as_int_refuses_the_rest_and_names_the_argument(value):
    with pytest.raises(TypeError, match="^input_shape must be an int, got"):
        as_int(value, "input_shape")


def test_as_int_minimum():
    assert as_int(np.int64(1000), "max_cols_bytes", minimum=1) == 1000
    with pytest.raises(ValueError, match="max_cols_bytes must be >= 1, got 0"):
        as_int(0, "max_cols_bytes", minimum=1)


# --- shapes, arrays, dtypes, choices, numbers ------------------------------------


def test_as_shape():
    assert as_shape((2, np.int64(3), 4), "input_shape") == (2, 3, 4)
    assert as_shape(np.array([2, 3]), "input_shape") == (2, 3)
    with pytest.raises(TypeError, match="input_shape must be an int, got float 6.5"):
        as_shape((2, 4, 6.5, 6), "input_shape")
    with pytest.raises(ValueError, match="input_shape must be >= 0, got -1"):
        as_shape((2, -1), "input_shape")
    with pytest.raises(TypeError, match="input_shape must be a sequence of ints, got int 5"):
        as_shape(5, "input_shape")


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "x must be an array, got None"),
        ("abc", "x must be an array, got 'abc'"),
        ([[1.0, 2.0], [3.0]], "x must be a rectangular array of numbers, got a ragged list"),
        (np.array(["a", "b"]), "x must be an array of numbers, got dtype <U1"),
        ([object()], "x must be an array of numbers, got dtype object"),
    ],
)
def test_as_array_names_the_argument(value, message):
    with pytest.raises(TypeError, match=message.replace("[", r"\[").replace("(", r"\(")):
        as_array(value, "x")


def test_as_array_passes_arrays_through():
    x = jnp.ones((2, 3))
    assert as_array(x, "x") is x
    assert as_array(np.ones((2,), np.float32), "x").dtype == jnp.float32


def test_dtypes():
    assert as_dtype(None, "dtype") is None
    assert as_dtype(jnp.bfloat16, "dtype") == jnp.bfloat16
    assert dtype_name(np.float64, "dtype") == "float64"
    with pytest.raises(TypeError, match="preferred_element_type must be a dtype, got 'float99'"):
        as_dtype("float99", "preferred_element_type")


def test_a_dtype_name_never_compares_equal_to_none():
    """The trap behind issue 12's silent wrong dtype: NumPy says a dtype equals None."""
    assert np.dtype("float64") == None  # noqa: E711
    assert dtype_name(np.dtype("float64"), "dtype") != None  # noqa: E711


def test_check_choice_is_exact():
    check_choice("pad_add", ("pad_add", "scatter_add"), "method")
    with pytest.raises(ValueError, match="method must be one of"):
        check_choice("PAD_ADD", ("pad_add", "scatter_add"), "method")
    with pytest.raises(ValueError, match="method must be one of"):
        check_choice(["pad_add"], ("pad_add", "scatter_add"), "method")


@pytest.mark.parametrize(
    "value, error",
    [(-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError), ("1", TypeError), (True, TypeError)],
)
def test_as_finite(value, error):
    assert as_finite(0.5, "min_time", minimum=0) == 0.5
    with pytest.raises(error, match="min_time must be"):
        as_finite(value, "min_time", minimum=0)


def test_freeze():
    assert freeze([1, [2, (3, [4])]]) == (1, (2, (3, (4,))))
    hash(freeze([[1, 2], [3]]))


def test_as_int_refuses_what_xla_cannot_hold():
    """A stride of 10**30 reached MLIR's attribute binding and failed there, naming nothing."""
    assert as_int(2**63 - 1, "stride") == 2**63 - 1
    with pytest.raises(ValueError, match="stride must fit in 64 bits, got 1" + "0" * 30):
        as_int(10**30, "stride")
