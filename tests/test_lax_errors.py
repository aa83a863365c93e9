"""The drop-ins raise lax's exception types: wherever lax raises ValueError or TypeError before XLA, so do we.

Each bad call goes to lax and to jaxconv, eagerly and under jit. Where lax raises ValueError or TypeError
in Python, jaxconv raises that very type (its message names the argument and the shapes). Where lax
raises something else (IndexError, AttributeError, RuntimeError, NotImplementedError, an assert) or is
stopped only by XLA's verifier, jaxconv still raises ValueError or TypeError, in Python; the case says why.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

import jaxconv

VERIFIER = "Cannot lower jaxpr with verifier errors"  # lax's ValueError when XLA's verifier, not lax, refuses


@dataclasses.dataclass
class Case:
    """A call: its operands (shapes, or a value that is no array), its keyword arguments, why lax is not mirrored."""

    lhs: Any
    rhs: Any
    kwargs: dict
    dtypes: tuple = ("float32", "float32")
    why: str | None = None  # set where lax raises no ValueError/TypeError before XLA, in some call form

    def operands(self) -> tuple[Any, Any]:
        return tuple(
            jnp.ones(shape, dtype) if isinstance(shape, tuple) else shape
            for shape, dtype in zip((self.lhs, self.rhs), self.dtypes)
        )


def conv_case(id, lhs=(2, 4, 5, 5), rhs=(6, 4, 3, 3), *, dtypes=("float32", "float32"), why=None, **kwargs):
    kwargs = dict(window_strides=(1, 1), padding="VALID") | kwargs
    return pytest.param(Case(lhs, rhs, kwargs, dtypes, why), id=id)


def transpose_case(id, lhs=(1, 4, 4, 3), rhs=(3, 3, 3, 2), *, dtypes=("float32", "float32"), why=None, **kwargs):
    kwargs = dict(strides=(2, 2), padding="SAME") | kwargs
    return pytest.param(Case(lhs, rhs, kwargs, dtypes, why), id=id)


INDEX_ERROR = "lax indexes the shapes with the layout and raises IndexError"
NO_ARRAY = "lax reads .shape off the operand: an AttributeError"
NCHW = ("NCHW", "OIHW", "NCHW")
IOTA = lax.ConvDimensionNumbers((0, 1, 2, 3), (0, 1, 2, 3), (0, 1, 2, 3))
EXPLICIT = ((0, 0), (0, 0))

CONV_CASES = [
    # ranks: lax's conv_dimension_numbers raises TypeError, except for a ConvDimensionNumbers, which it passes on
    # to the shape rule's ValueError.
    conv_case("rank-mismatch", rhs=(6, 4, 3)),
    conv_case("rank-mismatch-strings", rhs=(6, 4, 3), dimension_numbers=NCHW),
    conv_case("rank-mismatch-dnums", rhs=(6, 4, 3), dimension_numbers=IOTA, padding=EXPLICIT),
    conv_case("rank-mismatch-dnums-string-padding", rhs=(6, 4, 3), dimension_numbers=IOTA, why=INDEX_ERROR),
    conv_case("rank-1", lhs=(4,), rhs=(4,), window_strides=(), why=INDEX_ERROR),
    conv_case("rank-0", lhs=(), rhs=(), window_strides=(), why=INDEX_ERROR),
    conv_case("lhs-None", lhs=None, why=NO_ARRAY),
    conv_case("rhs-string", rhs="w", why=NO_ARRAY),
    # dimension_numbers
    conv_case("dnums-two-strings", dimension_numbers=("NCHW", "OIHW")),
    conv_case("dnums-not-strings", dimension_numbers=(1, 2, 3)),
    conv_case("dnums-a-string", dimension_numbers="NCHW"),
    conv_case("dnums-a-dict", dimension_numbers=dict(lhs="NCHW")),
    conv_case("dnums-short", dimension_numbers=("NCH", "OIH", "NCH")),
    conv_case("dnums-long", dimension_numbers=("NCHWD", "OIHWD", "NCHWD")),
    conv_case("dnums-spatial-chars", dimension_numbers=("NCHW", "OIHW", "NCXW")),
    conv_case("dnums-duplicate", dimension_numbers=("NCHH", "OIHW", "NCHW")),
    conv_case("dnums-no-batch", dimension_numbers=("XCHW", "OIHW", "NCHW")),
    conv_case("dnums-no-out-feature", dimension_numbers=("NCHW", "XIHW", "NCHW")),
    conv_case("dnums-out-of-range", dimension_numbers=IOTA._replace(lhs_spec=(0, 1, 2, 4)), why=INDEX_ERROR),
    conv_case("dnums-repeated-axis", dimension_numbers=IOTA._replace(lhs_spec=(0, 1, 2, 2))),
    conv_case("dnums-spec-length", dimension_numbers=IOTA._replace(lhs_spec=(0, 1, 2)), why=INDEX_ERROR),
    # window_strides
    conv_case("strides-length", window_strides=(1,)),
    conv_case("strides-length-same", window_strides=(1, 1, 1), padding="SAME"),
    conv_case("strides-zero", window_strides=(0, 1)),
    conv_case("strides-negative", window_strides=(-1, 1)),
    conv_case("strides-float", window_strides=(1.0, 1)),
    conv_case("strides-None", window_strides=None),
    conv_case("strides-int", window_strides=2),
    conv_case("strides-string", window_strides="11"),
    conv_case("strides-2d-array", window_strides=np.ones((2, 1), int)),
    # padding
    conv_case("padding-count", padding=((1, 1),)),
    conv_case("padding-count-high", padding=((1, 1),) * 3),
    conv_case("padding-unknown-string", padding="FULL", why="lax's padtype_to_pads raises RuntimeError"),
    conv_case("padding-not-pairs", padding=(1, 1)),
    conv_case("padding-triples", padding=((1, 1, 1), (0, 0, 0))),
    conv_case("padding-float", padding=((1.5, 1), (0, 0))),
    conv_case("padding-integral-float", padding=((1.0, 1), (0, 0))),
    conv_case("padding-None", padding=None),
    conv_case("padding-int", padding=1),
    conv_case("padding-string-entries", padding=("SAME", "SAME")),
    conv_case("padding-crops-past-input", padding=((-3, -3), (0, 0))),
    conv_case("padding-crops-past-dilated-input", padding=((-10, 0), (0, 0)), lhs_dilation=(2, 1)),
    conv_case("string-padding-with-lhs-dilation", padding="SAME", lhs_dilation=(2, 2)),
    # lhs and rhs dilation: lax's _dilate_shape refuses a non-positive one with a TypeError
    conv_case("lhs-dilation-zero", lhs_dilation=(0, 1), padding=EXPLICIT),
    conv_case("lhs-dilation-negative", lhs_dilation=(-1, 1), padding=EXPLICIT),
    conv_case("lhs-dilation-length", lhs_dilation=(1,), padding=EXPLICIT),
    conv_case("lhs-dilation-float", lhs_dilation=(2.0, 1), padding=EXPLICIT),
    conv_case("lhs-dilation-int", lhs_dilation=2, padding=EXPLICIT),
    conv_case("lhs-dilation-int-string-padding", lhs_dilation=2),
    conv_case("rhs-dilation-zero", rhs_dilation=(0, 1)),
    conv_case("rhs-dilation-negative", rhs_dilation=(1, -2)),
    conv_case("rhs-dilation-length", rhs_dilation=(1, 1, 1)),
    conv_case("rhs-dilation-float", rhs_dilation=(1.0, 1), why="lax's lowering raises NotImplementedError"),
    conv_case("rhs-dilation-int", rhs_dilation=2),
    # feature and batch groups
    conv_case("feature-groups-zero", feature_group_count=0),
    conv_case("feature-groups-negative", feature_group_count=-2),
    conv_case("feature-groups-None", feature_group_count=None),
    conv_case(
        "feature-groups-float",
        rhs=(6, 2, 3, 3),
        feature_group_count=2.0,
        why="lax's lowering raises NotImplementedError ('non-static ... feature_group_count')",
    ),
    conv_case("feature-groups-vs-lhs", rhs=(6, 2, 3, 3), feature_group_count=3),
    conv_case("feature-groups-vs-rhs-in", rhs=(6, 4, 3, 3), feature_group_count=2),
    conv_case("feature-groups-vs-rhs-out", rhs=(5, 2, 3, 3), feature_group_count=2),
    conv_case("batch-groups-zero", batch_group_count=0),
    conv_case("batch-groups-negative", batch_group_count=-1),
    conv_case("batch-groups-vs-batch", lhs=(3, 4, 5, 5), batch_group_count=2),
    conv_case("batch-groups-vs-rhs-out", rhs=(5, 4, 3, 3), batch_group_count=2),
    conv_case("both-groups", rhs=(4, 2, 3, 3), feature_group_count=2, batch_group_count=2),
    # channels
    conv_case("channel-mismatch", rhs=(6, 3, 3, 3)),
    conv_case("channel-mismatch-nhwc", lhs=(2, 5, 5, 4), rhs=(3, 3, 3, 6), dimension_numbers=("NHWC", "HWIO", "NHWC")),
    # dtypes
    conv_case("dtype-mismatch", dtypes=("float32", "float16")),
    conv_case("dtype-int-float", dtypes=("int32", "float32")),
    conv_case("dtype-mismatch-and-channels", rhs=(6, 3, 3, 3), dtypes=("float32", "float16")),  # shape rule first
    conv_case("preferred-narrower", preferred_element_type=jnp.float16),
    conv_case("preferred-int-for-float", preferred_element_type=jnp.int32),
    conv_case("preferred-float-for-complex", dtypes=("complex64",) * 2, preferred_element_type=jnp.float32),
    conv_case("preferred-unsigned-for-signed", dtypes=("int32",) * 2, preferred_element_type=jnp.uint32),
    conv_case("preferred-not-a-dtype", preferred_element_type="float99"),
    # precision
    conv_case("precision-unknown-name", precision="best"),
    conv_case("precision-three", precision=[lax.Precision.HIGHEST] * 3),
    conv_case("precision-pair-with-None", precision=(lax.Precision.HIGHEST, None)),
    conv_case("precision-int", precision=5),
    # out_sharding
    conv_case("out-sharding-string", out_sharding="bogus"),
    conv_case("out-sharding-spec-without-mesh", out_sharding=P()),
    # sizes: an empty output is fine (ACCEPTED below), a zero-size window is not
    conv_case("zero-size-kernel", rhs=(6, 4, 0, 3)),
]

TRANSPOSE_CASES = [
    # lax.conv_transpose asserts equal ranks >= 2 (an AssertionError, gone under python -O): ours is a ValueError.
    transpose_case("rank-mismatch", rhs=(3, 3, 2), why="lax asserts: an AssertionError; ours is a ValueError"),
    transpose_case("rank-1", lhs=(3,), rhs=(3,), strides=(), why="lax asserts: an AssertionError; ours a ValueError"),
    transpose_case("rank-6-no-default-layout", lhs=(1, 2, 2, 2, 2, 3), rhs=(1, 1, 1, 1, 3, 2), strides=(1,) * 4),
    transpose_case("dnums-short", dimension_numbers=("NHC", "HIO", "NHC")),
    transpose_case("dnums-duplicate", dimension_numbers=("NHHC", "HWIO", "NHWC")),
    # strides: with 'SAME'/'VALID' lax zips them into the padding (too few: too few pads, a TypeError; floats:
    # float pads, a ValueError); then they are the conv's lhs_dilation.
    transpose_case("strides-short", strides=(2,)),
    transpose_case("strides-long", strides=(2, 2, 2)),
    transpose_case("strides-short-explicit-padding", strides=(2,), padding=((1, 1), (1, 1))),
    transpose_case("strides-zero", strides=(0, 1)),
    transpose_case("strides-negative", strides=(-2, 1)),
    transpose_case("strides-float", strides=(2.0, 2)),
    transpose_case("strides-float-explicit-padding", strides=(2.0, 2), padding=((1, 1), (1, 1))),
    transpose_case("strides-None", strides=None),
    transpose_case("strides-int", strides=2),
    transpose_case("rhs-dilation-short", rhs_dilation=(2,)),
    transpose_case("rhs-dilation-float", rhs_dilation=(2.0, 1)),
    transpose_case("rhs-dilation-zero", rhs_dilation=(0, 1)),
    transpose_case("padding-unknown-string", padding="FULL"),
    transpose_case("padding-unknown-string-unit-strides", padding="FULL", strides=(1, 1), why="RuntimeError, as above"),
    transpose_case("padding-count", padding=((1, 1),)),
    transpose_case("padding-count-consistent", padding=((1, 1),), use_consistent_padding=True),
    transpose_case("padding-lists-consistent", padding=[[1, 1], [1, 1]], use_consistent_padding=True),
    transpose_case("padding-int-consistent", padding=1, use_consistent_padding=True),
    transpose_case("padding-not-pairs", padding=(1, 1)),
    transpose_case("padding-float", padding=((1.5, 1), (0, 0))),
    transpose_case("channel-mismatch", rhs=(3, 3, 2, 2)),
    transpose_case("dtype-mismatch", dtypes=("float32", "bfloat16")),
    transpose_case("preferred-narrower", preferred_element_type=jnp.bfloat16),
    transpose_case("precision-unknown-name", precision="best"),
]

# Calls lax takes: the drop-ins must take them too (an empty output is an output).
ACCEPTED = [
    pytest.param(lax.conv_general_dilated, jaxconv.conv_general_dilated, *case.values, id=case.id)
    for case in [
        conv_case("kernel-larger-than-input", rhs=(6, 4, 7, 3)),
        conv_case("cropped-to-empty", padding=((-2, 0), (0, 0))),
        conv_case("zero-batch", lhs=(0, 4, 5, 5)),
        conv_case("zero-spatial", lhs=(2, 4, 0, 5)),
        conv_case("zero-out-features", rhs=(0, 4, 3, 3), padding="SAME"),
        conv_case("lowercase-padding", padding="same_lower"),
        conv_case("bool-pads", padding=((True, False), (0, 0))),
        conv_case("array-pads-and-strides", padding=np.array([[1, 1], [0, 0]]), window_strides=np.array([1, 2])),
    ]
] + [
    pytest.param(lax.conv_transpose, jaxconv.conv_transpose, *case.values, id=case.id)
    for case in [
        transpose_case("transpose-strides-None-explicit-padding", strides=None, padding=((1, 1), (1, 1))),
        transpose_case("transpose-consistent-pairs", padding=((1, 0), (0, 1)), use_consistent_padding=True),
    ]
]


def raised(fn, case: Case, *, jit: bool) -> Exception | None:
    """What calling ``fn`` on ``case`` raises: eagerly, or under jit (tracing, lowering and compiling)."""
    call = lambda lhs, rhs: fn(lhs, rhs, **case.kwargs)
    # lax's eager dispatch caches by parameters, and 1.0 == 1: a float-dilation call would poison the next.
    jax.clear_caches()
    try:
        if jit:
            jax.jit(call).lower(*case.operands()).compile()
        else:
            call(*case.operands())
    except Exception as error:  # noqa: BLE001
        return error
    return None


def _lax_raises_in_python(error: Exception | None) -> bool:
    """lax's own ValueError or TypeError, not XLA's (its verifier's ValueError, or a runtime error)."""
    return type(error) in (ValueError, TypeError) and not str(error).startswith(VERIFIER)


def _check_same_type(theirs, ours, case: Case, jit: bool) -> None:
    lax_error, our_error = raised(theirs, case, jit=jit), raised(ours, case, jit=jit)
    assert lax_error is not None, "lax takes this call: it belongs in ACCEPTED"
    assert type(our_error) in (ValueError, TypeError), f"ours raised {our_error!r}, lax {lax_error!r}"
    assert not isinstance(our_error, jax.errors.JaxRuntimeError) and VERIFIER not in str(our_error)
    if _lax_raises_in_python(lax_error):
        assert type(our_error) is type(lax_error), f"ours: {our_error!r}\nlax: {lax_error!r}"
    else:
        # lax raises another type, or only XLA refuses the call: ours is a ValueError/TypeError all the same,
        # raised in Python; the case says which and why.
        assert case.why or str(lax_error).startswith(VERIFIER), f"say why lax raised {lax_error!r}"


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # lax's shape rule, on stride 0
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_general_dilated_raises_lax_types(case, jit):
    _check_same_type(lax.conv_general_dilated, jaxconv.conv_general_dilated, case, jit)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose_raises_lax_types(case, jit):
    _check_same_type(lax.conv_transpose, jaxconv.conv_transpose, case, jit)


@pytest.mark.parametrize("theirs, ours, case", ACCEPTED)
def test_what_lax_takes_is_taken(theirs, ours, case):
    lax_shape, our_shape = (
        jax.eval_shape(lambda lhs, rhs, fn=fn: fn(lhs, rhs, **case.kwargs), *case.operands()) for fn in (theirs, ours)
    )
    assert our_shape == lax_shape


def test_messages_name_the_argument_and_the_shapes():
    """One type, whatever the message: ours still say what was wrong, with what."""
    lhs, rhs = jnp.ones((2, 4, 5, 5)), jnp.ones((6, 4, 3))
    with pytest.raises(ValueError, match=r"same rank, got lhs.shape=\(2, 4, 5, 5\) and rhs.shape=\(6, 4, 3\)"):
        jaxconv.conv_general_dilated(lhs, rhs, (1, 1), EXPLICIT, dimension_numbers=IOTA)
    with pytest.raises(TypeError, match=r"rhs_dilation must be >= 1 in every dimension, got \(0, 1\)"):
        jaxconv.conv_general_dilated(lhs, jnp.ones((6, 4, 3, 3)), (1, 1), "VALID", rhs_dilation=(0, 1))
    with pytest.raises(TypeError, match=r"padding must have one entry per spatial dimension \(2\) for lhs.shape"):
        jaxconv.conv_general_dilated(lhs, jnp.ones((6, 4, 3, 3)), (1, 1), ((1, 1),))
    with pytest.raises(TypeError, match=r"strides must have 2 entries for lhs.shape=\(1, 4, 4, 3\)"):
        jaxconv.conv_transpose(jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 3, 2)), (2,), "SAME")
