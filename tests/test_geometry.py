"""Tests for jaxconv._geometry: argument normalisation, string padding and output shapes, against lax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from jaxconv._geometry import (
    ConvGeometry,
    check_windows_fit,
    conv_geometry,
    dilate_dim,
    normalize_padding,
    padtype_to_pads,
)

# --- normalize_padding --------------------------------------------------------


def test_normalize_padding_int():
    assert normalize_padding(1, 2) == ((1, 1), (1, 1))
    assert normalize_padding(-1, 1) == ((-1, -1),)


def test_normalize_padding_integer_arrays():
    assert normalize_padding(np.array([1, 2]), 2) == ((1, 1), (2, 2))
    assert normalize_padding(np.array([[1, 0], [0, 2]]), 2) == ((1, 0), (0, 2))
    assert normalize_padding(np.int64(1), 1) == ((1, 1),)
    with pytest.raises(TypeError, match="padding must hold ints, got an array of dtype float"):
        normalize_padding(np.array([1.0, 2.0]), 2)


def test_normalize_padding_per_dim_ints():
    assert normalize_padding((1, 2, 0), 3) == ((1, 1), (2, 2), (0, 0))


def test_normalize_padding_pairs_with_negative():
    assert normalize_padding(((1, 0), (-1, 2)), 2) == ((1, 0), (-1, 2))
    assert normalize_padding([[0, -2]], 1) == ((0, -2),)


def test_normalize_padding_mixed_ints_and_pairs():
    assert normalize_padding((1, (0, 2)), 2) == ((1, 1), (0, 2))


@pytest.mark.parametrize(
    "padding, expected",
    [
        ("VALID", "VALID"),
        ("valid", "VALID"),
        ("Same", "SAME"),
        ("same_lower", "SAME_LOWER"),
        ("SAME_LOWER", "SAME_LOWER"),
    ],
)
def test_normalize_padding_strings_any_case(padding, expected):
    assert normalize_padding(padding, 2) == expected


def test_normalize_padding_unknown_string():
    with pytest.raises(ValueError, match="padding must be one of .*got 'FULL'"):
        normalize_padding("FULL", 2)


def test_normalize_padding_wrong_length():
    with pytest.raises(ValueError, match=r"padding must have one entry per spatial dimension \(2\), got 3"):
        normalize_padding((1, 1, 1), 2)


def test_normalize_padding_bad_pair():
    with pytest.raises(ValueError, match=r"\(lo, hi\) pairs, got \(1, 2, 3\)"):
        normalize_padding(((1, 2, 3), (0, 0)), 2)


@pytest.mark.parametrize("padding", [1.5, ((0.5, 1), (0, 0)), None])
def test_normalize_padding_non_int(padding):
    with pytest.raises(TypeError, match="padding must be an int"):
        normalize_padding(padding, 2)


# --- padtype_to_pads: same rule as lax ---------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 3),
    padding=st.sampled_from(["VALID", "SAME", "SAME_LOWER", "same", "Same_Lower", "valid"]),
)
def test_padtype_to_pads_matches_lax(data, n, padding):
    in_spatial = data.draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))
    window = data.draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    stride = data.draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    expected = lax.padtype_to_pads(in_spatial, window, stride, padding.upper())
    actual = padtype_to_pads(in_spatial, window, stride, padding)
    assert actual == tuple(tuple(int(p) for p in pair) for pair in expected)


def test_padtype_to_pads_same_gives_ceil_outputs():
    # SAME: ceil(7 / 2) = 4 outputs of a 3-window -> total pad 2, split evenly; 4-window -> odd pad goes high.
    assert padtype_to_pads((7,), (3,), (2,), "SAME") == ((1, 1),)
    assert padtype_to_pads((6,), (4,), (1,), "SAME") == ((1, 2),)
    assert padtype_to_pads((6,), (4,), (1,), "SAME_LOWER") == ((2, 1),)


def test_padtype_to_pads_unknown_string():
    with pytest.raises(ValueError, match="padding must be one of"):
        padtype_to_pads((5,), (3,), (1,), "FULL")


# --- ConvGeometry / conv_geometry vs the shapes lax produces ----------------------


def _lax_out_spatial(in_spatial, kernel, stride, padding, dilation, lhs_dilation):
    n = len(in_spatial)
    out = jax.eval_shape(
        lambda x, w: lax.conv_general_dilated(x, w, stride, padding, lhs_dilation=lhs_dilation, rhs_dilation=dilation),
        jax.ShapeDtypeStruct((1, 1) + tuple(in_spatial), jnp.float32),
        jax.ShapeDtypeStruct((1, 1) + tuple(kernel), jnp.float32),
    )
    assert out.shape[:2] == (1, 1)
    return tuple(out.shape[2:]) if n else ()


@st.composite
def _window_args(draw):
    n = draw(st.integers(1, 3))
    dims = lambda lo, hi: tuple(draw(st.integers(lo, hi)) for _ in range(n))  # noqa: E731
    in_spatial, kernel, stride, dilation = dims(1, 12), dims(1, 5), dims(1, 4), dims(1, 3)
    if draw(st.booleans()):
        padding = draw(st.sampled_from(["VALID", "SAME", "SAME_LOWER"]))
        lhs_dilation = (1,) * n
    else:
        padding = tuple((draw(st.integers(-4, 4)), draw(st.integers(-4, 4))) for _ in range(n))
        lhs_dilation = dims(1, 3)
    return in_spatial, kernel, stride, padding, dilation, lhs_dilation


@settings(max_examples=40, deadline=None)
@given(args=_window_args())
def test_out_spatial_matches_lax(args):
    in_spatial, kernel, stride, padding, dilation, lhs_dilation = args
    try:
        geometry = conv_geometry(
            in_spatial, kernel, stride=stride, padding=padding, dilation=dilation, lhs_dilation=lhs_dilation
        )
    except ValueError as error:
        # Only over-cropping negative padding is rejected, and lax rejects it too.
        assert "crops more than the input holds" in str(error)
        with pytest.raises(ValueError, match="Negative padding is larger"):
            _lax_out_spatial(in_spatial, kernel, stride, padding, dilation, lhs_dilation)
        return
    assert geometry.out_spatial == _lax_out_spatial(in_spatial, kernel, stride, padding, dilation, lhs_dilation)
    assert geometry.num_windows == int(np.prod(geometry.out_spatial))
    assert geometry.window_size == int(np.prod(kernel))
    assert all(len(pair) == 2 for pair in geometry.padding) and len(geometry.padding) == len(in_spatial)
    if isinstance(padding, str):
        dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
        expected = lax.padtype_to_pads(in_spatial, dilated, stride, padding)
        assert geometry.padding == tuple(tuple(int(p) for p in pair) for pair in expected)
    else:
        assert geometry.padding == padding


def test_conv_geometry_fields():
    g = conv_geometry((5, 6), (3, 2), stride=(2, 1), padding=((1, 0), (-1, 2)), dilation=(1, 2), lhs_dilation=(2, 1))
    assert isinstance(g, ConvGeometry)
    assert g.ndim == 2
    assert g.dilated_input == (9, 6)
    assert g.padded_spatial == (10, 7)
    assert g.dilated_kernel == (3, 3)
    # (10 - 3) // 2 + 1 = 4 and (7 - 3) // 1 + 1 = 5
    assert g.out_spatial == (4, 5)
    assert hash(g) == hash(
        conv_geometry((5, 6), (3, 2), stride=(2, 1), padding=((1, 0), (-1, 2)), dilation=(1, 2), lhs_dilation=(2, 1))
    )


def test_conv_geometry_empty_output_is_allowed():
    assert conv_geometry((3,), (5,)).out_spatial == (0,)


@pytest.mark.parametrize("size, dilation, expected", [(3, 1, 3), (3, 2, 5), (1, 4, 1), (0, 2, 0)])
def test_dilate_dim(size, dilation, expected):
    assert dilate_dim(size, dilation) == expected


def test_conv_geometry_rank_mismatch():
    with pytest.raises(ValueError, match=r"kernel_size \(3,\) and input spatial shape \(5, 5\) differ in rank"):
        conv_geometry((5, 5), (3,))


def test_conv_geometry_zero_kernel():
    with pytest.raises(ValueError, match=r"kernel spatial shape must be positive, got \(0, 3\)"):
        conv_geometry((5, 5), (0, 3))


def test_conv_geometry_over_cropping():
    with pytest.raises(ValueError, match=r"crops more than the input holds: input spatial shape \(5,\)"):
        conv_geometry((5,), (1,), padding=((-3, -3),))


def test_conv_geometry_string_padding_with_lhs_dilation():
    with pytest.raises(ValueError, match="string padding 'SAME' is not defined with lhs_dilation"):
        conv_geometry((5,), (3,), padding="same", lhs_dilation=2)


def test_check_windows_fit():
    check_windows_fit(conv_geometry((5, 5), (5, 5)))
    with pytest.raises(ValueError, match=r"kernel of spatial shape \(3, 3\) \(dilated to \(5, 5\)\) is larger"):
        check_windows_fit(conv_geometry((4, 4), (3, 3), dilation=2))


@pytest.mark.parametrize(
    "in_spatial, kernel, name", [((5.9, 5), (2, 3), "input spatial shape"), ((5, 5), (2.5, 3), "kernel_size")]
)
def test_conv_geometry_rejects_non_int_sizes(in_spatial, kernel, name):
    with pytest.raises(TypeError, match=f"{name} must be an int, got float"):
        conv_geometry(in_spatial, kernel)


def test_conv_geometry_refuses_sizes_beyond_int32_indexing():
    with pytest.raises(ValueError, match=r"make a spatial size of 2000000000004, beyond 2147483647 per dimension"):
        conv_geometry((4, 4), (1, 1), padding=10**12)
    assert conv_geometry((4, 4), (1, 1), padding=2**20).padded_spatial == (2**21 + 4,) * 2
