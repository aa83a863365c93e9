"""Tests for jaxconv._pallas: the fused im2col/col2im GEMM kernels against lax, in interpret mode on CPU.

Every convolution runs all three kernels (O_f, dL/dF_f, dL/dI) and
``jax.vjp`` of ``lax.conv_general_dilated`` at HIGHEST precision in one jit,
so each case costs one compile. Shapes are small and odd so that no dimension
is a multiple of the 16-wide blocks. The CUDA tests lower the kernels through
Triton without a GPU, read each dot's input precision (TF32 or IEEE float32)
in the Triton IR, and compile them to PTX where jax-cuda12-plugin is installed.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import (
    NOTE_BACKWARD,
    assert_close,
    conv_cases,
    primitive_names,
    random_array,
    reference_dtype,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import jaxconv
from jaxconv._api import conv_spec
from jaxconv._conv import _filter_grad, _forward, _transposed_forward
from jaxconv._geometry import conv_geometry
from jaxconv._im2col import window_indices
from jaxconv._pallas import (
    Blocks,
    choose_blocks,
    fused_filter_grad,
    fused_forward,
    fused_input_grad,
    phi_offsets,
    tap_offsets,
    unsupported_reason,
    window_taps,
)

# --- index construction ------------------------------------------------------------


@st.composite
def geometries(draw, *, lhs_dilation=True):
    """Geometries of 1 to 3 spatial dims, any stride, dilation, (negative) padding, possibly lhs dilation."""
    n = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    base = tuple(draw(st.integers(1, 2 if lhs_dilation else 1)) for _ in range(n))
    padding = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(n))
    # The smallest input whose dilated, padded size (s - 1) * base + 1 + lo + hi holds one dilated kernel.
    smallest = [
        max(1, 1 - (-((k - 1) * d - 1 - lo - hi) // b)) for k, d, b, (lo, hi) in zip(kernel, dilation, base, padding)
    ]
    spatial = tuple(draw(st.integers(low, max(low, 7))) for low in smallest)
    return conv_geometry(spatial, kernel, stride=stride, padding=padding, dilation=dilation, lhs_dilation=base)


@settings(max_examples=40, deadline=None)
@given(geometry=geometries(), batch=st.integers(1, 3), channels=st.integers(1, 3))
def test_phi_offsets_factorise_window_indices(geometry, batch, channels):
    """``row_base[:, None] + col_off[None, :]`` is window_indices, per image, scaled by C and with c added last."""
    row_base, col_off = phi_offsets(geometry, batch, channels)
    windows = window_indices(geometry).astype(np.int64)  # (P, K): padded pixel of (window, kernel offset)
    image = math.prod(geometry.padded_spatial)
    pixel = np.arange(batch)[:, None, None] * image + windows[None]  # (N, P, K)
    expected = pixel[..., None] * channels + np.arange(channels)  # (N, P, K, C): columns (kernel offset, c)
    expected = expected.reshape(batch * geometry.num_windows, geometry.window_size * channels)
    np.testing.assert_array_equal(row_base[:, None] + col_off[None, :], expected)
    assert row_base.dtype == col_off.dtype == np.int32


@settings(max_examples=40, deadline=None)
@given(geometry=geometries())
def test_window_taps_invert_window_indices(geometry):
    """taps[i, t] == p exactly when window p reads input pixel i through kernel offset t; else the zero row."""
    expected = np.full((math.prod(geometry.in_spatial), geometry.window_size), geometry.num_windows)
    padded = np.unravel_index(window_indices(geometry), geometry.padded_spatial)  # per dim, (P, K)
    for p, t in np.ndindex(geometry.num_windows, geometry.window_size):
        pixel = []
        for d, (lo, _) in enumerate(geometry.padding):
            shifted = int(padded[d][p, t]) - lo
            if (
                shifted % geometry.lhs_dilation[d]
                or not 0 <= shifted // geometry.lhs_dilation[d] < geometry.in_spatial[d]
            ):
                break  # a pad or a hole: no input pixel
            pixel.append(shifted // geometry.lhs_dilation[d])
        else:
            expected[np.ravel_multi_index(pixel, geometry.in_spatial), t] = p
    np.testing.assert_array_equal(window_taps(geometry), expected)


def test_tap_offsets_read_window_taps_rows_and_each_images_zero_row():
    """Entry (n, q), (t, f) reads feature f of row window_taps[q, t] of image n, in (N, OH*OW + 1, FN)."""
    geometry = conv_geometry((5, 4), (2, 3), stride=2, padding=1)
    batch, features = 2, 3
    gather = tap_offsets(geometry, batch, features)
    address = gather.row_base[:, None] + gather.table[gather.row_tap[:, None] + gather.col_tap] + gather.col_off
    shape = (batch, math.prod(geometry.in_spatial), geometry.window_size, features)
    image, row, feature = (
        a.reshape(shape) for a in np.unravel_index(address, (batch, geometry.num_windows + 1, features))
    )
    np.testing.assert_array_equal(image, np.broadcast_to(np.arange(batch)[:, None, None, None], shape))
    np.testing.assert_array_equal(row, np.broadcast_to(window_taps(geometry)[None, :, :, None], shape))
    np.testing.assert_array_equal(feature, np.broadcast_to(np.arange(features), shape))
    assert (row == geometry.num_windows).any()  # stride holes read the zero row


# --- values and gradients against lax -------------------------------------------------


@functools.partial(jax.jit, static_argnames=("geometry", "groups", "blocks", "precision"))
def _fused_and_lax(x, w, cotangent, *, geometry, groups, blocks=None, precision=None):
    """The three kernels' outputs and lax's output and VJP at HIGHEST, in one compile."""

    def lax_conv(x, w):
        return lax.conv_general_dilated(
            x,
            w,
            geometry.stride,
            geometry.padding,
            lhs_dilation=geometry.lhs_dilation,
            rhs_dilation=geometry.dilation,
            feature_group_count=groups,
            precision=lax.Precision.HIGHEST,
        )

    ref_dtype = reference_dtype(x.dtype)
    out, pullback = jax.vjp(lax_conv, x.astype(ref_dtype), w.astype(ref_dtype))
    dx, dw = pullback(cotangent.astype(ref_dtype))
    options = dict(blocks=blocks, precision=precision)
    fused = (
        fused_forward(x, w, geometry, groups, **options),
        fused_filter_grad(x, cotangent, geometry, groups, **options),
        fused_input_grad(cotangent, w, geometry, groups, **options),
    )
    return fused, (out, dw, dx)


def _check_against_lax(x_shape, w_shape, *, groups=1, dtype="float32", blocks=None, precision=None, seed=0, **window):
    rng = np.random.default_rng(seed)
    geometry = conv_geometry(x_shape[2:], w_shape[2:], **window)
    assert unsupported_reason(geometry, groups, dtype, x_shape=x_shape, w_shape=w_shape) is None
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    cotangent = random_array(rng, (x_shape[0], w_shape[0]) + geometry.out_spatial, dtype)
    fused, expected = _fused_and_lax(
        x, w, cotangent, geometry=geometry, groups=groups, blocks=blocks, precision=precision
    )
    for name, actual, reference in zip(("O", "dL/dW", "dL/dI"), fused, expected):
        assert actual.dtype == jnp.dtype(dtype), name
        # Each value sums up to C*prod(k) (dL/dW: N*prod(out)) products; scale the tolerance like lax's own.
        assert_close(actual, reference, dtype, scale=2.0, what=f"{name} of {x_shape} * {w_shape}, {window}")


CASES = {
    "plain 3x3": ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    "stride and SAME": ((2, 2, 9, 7), (3, 2, 3, 3), dict(stride=2, padding="SAME")),
    "asymmetric and negative pads": ((1, 3, 8, 9), (5, 3, 2, 3), dict(stride=(1, 2), padding=((2, 0), (-1, 1)))),
    "dilation and SAME_LOWER": ((2, 2, 9, 8), (3, 2, 3, 2), dict(dilation=(2, 3), padding="SAME_LOWER")),
    "groups": ((2, 6, 7, 7), (9, 2, 3, 3), dict(stride=(2, 1), padding=1, groups=3)),
    "depthwise": ((1, 4, 6, 5), (4, 1, 3, 2), dict(padding=((0, 1), (1, 1)), groups=4)),
    "stride > kernel (pixels nobody reads)": ((1, 2, 11, 9), (2, 2, 2, 2), dict(stride=3)),
    "1x1": ((3, 5, 4, 3), (7, 5, 1, 1), {}),
    "1-d": ((2, 3, 13), (4, 3, 3), dict(stride=2, padding=((1, 2),), dilation=2)),
    "3-d, groups": ((1, 4, 5, 6, 4), (4, 2, 2, 3, 2), dict(stride=(1, 2, 1), padding=1, groups=2)),
    "lhs dilation (transposed conv)": ((2, 2, 5, 4), (3, 2, 3, 3), dict(lhs_dilation=(2, 3), padding=((2, 1), (0, 2)))),
    "32 out features, 2 column blocks": ((1, 3, 6, 6), (33, 3, 2, 2), dict(padding=1)),
}


@pytest.mark.parametrize("name", CASES)
def test_kernels_match_lax(name):
    x_shape, w_shape, kwargs = CASES[name]
    kwargs = dict(kwargs)
    _check_against_lax(x_shape, w_shape, groups=kwargs.pop("groups", 1), **kwargs)


@settings(max_examples=10, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_kernels_match_lax_on_random_convolutions(case, seed):
    window = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    _check_against_lax(case["x_shape"], case["w_shape"], groups=case["groups"], seed=seed, **window)


def test_split_reduction_and_other_blocks_give_the_same_results():
    """Split-K over three programs per tile, and 32-wide tiles: the same sums."""
    _check_against_lax((2, 3, 9, 8), (5, 3, 3, 2), blocks=Blocks(16, 16, 16, splits=3), stride=(1, 2), padding=1)
    _check_against_lax((2, 3, 9, 8), (5, 3, 3, 2), blocks=Blocks(32, 32, 32), padding="SAME")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_accumulates_in_float32(dtype):
    _check_against_lax((2, 4, 7, 6), (5, 4, 3, 3), dtype=dtype, stride=(2, 1), padding=1)


@pytest.mark.parametrize("precision", ["highest", lax.Precision.DEFAULT, ("default", "highest")])
def test_precision_reaches_the_interpreter(precision):
    """Every form of ``precision`` runs; on CPU float32 GEMMs are full float32 at any precision, as lax's."""
    _check_against_lax((2, 3, 7, 6), (4, 3, 3, 2), precision=precision, stride=(2, 1), padding=1)


def test_float64():
    with jax.enable_x64(True):
        _check_against_lax((1, 3, 6, 5), (4, 3, 2, 3), dtype="float64", stride=2, padding=((1, 0), (2, 1)))


def test_preferred_element_type_sets_the_output_dtype():
    rng = np.random.default_rng(1)
    geometry = conv_geometry((6, 6), (3, 3), padding=1)
    x, w = random_array(rng, (1, 2, 6, 6), "bfloat16"), random_array(rng, (3, 2, 3, 3), "bfloat16")
    out = fused_forward(x, w, geometry, 1, preferred_element_type=jnp.float32)
    assert out.dtype == jnp.float32
    expected = lax.conv_general_dilated(
        x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), geometry.padding, precision=lax.Precision.HIGHEST
    )
    assert_close(out, expected, "float32")


def test_gradients_take_a_wider_cotangent():
    """bfloat16 x and w with a float32 dL/dO (a float32 preferred_element_type): computed in float32."""
    rng = np.random.default_rng(2)
    geometry = conv_geometry((7, 6), (3, 2), stride=(2, 1), padding=1)
    x, w = random_array(rng, (2, 3, 7, 6), "bfloat16"), random_array(rng, (4, 3, 3, 2), "bfloat16")
    dout = random_array(rng, (2, 4) + geometry.out_spatial, "float32")
    dw, dx = fused_filter_grad(x, dout, geometry, 1), fused_input_grad(dout, w, geometry, 1)
    assert dw.dtype == dx.dtype == jnp.float32
    _, pullback = jax.vjp(
        lambda x, w: lax.conv_general_dilated(x, w, (2, 1), geometry.padding, precision=lax.Precision.HIGHEST),
        x.astype(jnp.float32),
        w.astype(jnp.float32),
    )
    expected_dx, expected_dw = pullback(dout)
    assert_close(dw, expected_dw, scale=2.0)
    assert_close(dx, expected_dx, scale=2.0)


def test_vmap_adds_a_grid_dimension():
    """Pallas batches the kernel over a vmapped axis of x or of w."""
    rng = np.random.default_rng(3)
    geometry = conv_geometry((6, 5), (3, 2), padding=1)
    xs, w = random_array(rng, (3, 2, 2, 6, 5)), random_array(rng, (4, 2, 3, 2))
    lax_conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), geometry.padding, precision=lax.Precision.HIGHEST)
    fused = lambda x, w: fused_forward(x, w, geometry, 1)
    assert_close(jax.vmap(fused, (0, None))(xs, w), jax.vmap(lax_conv, (0, None))(xs, w))
    ws = jnp.stack([w, -2 * w])
    assert_close(jax.vmap(fused, (None, 0))(xs[0], ws), jax.vmap(lax_conv, (None, 0))(xs[0], ws))


def test_empty_batch_gives_empty_results():
    geometry = conv_geometry((5, 5), (3, 3))
    x, w = jnp.zeros((0, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
    dout = jnp.zeros((0, 3, 3, 3))
    assert fused_forward(x, w, geometry, 1).shape == (0, 3, 3, 3)
    assert fused_input_grad(dout, w, geometry, 1).shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(fused_filter_grad(x, dout, geometry, 1), np.zeros((3, 2, 3, 3)))


# --- what is not supported ------------------------------------------------------------


@pytest.mark.parametrize(
    ("geometry", "groups", "dtype", "shapes", "reason"),
    [
        (conv_geometry((8, 8), (3, 3)), 1, jnp.complex64, {}, "dtype complex64"),
        (conv_geometry((8, 8), (3, 3)), 1, jnp.int32, {}, "dtype int32"),
        (conv_geometry((2, 2), (3, 3)), 1, jnp.float32, {}, "empty convolution"),
        (conv_geometry((4,) * 4, (2,) * 4), 1, jnp.float32, {}, "4 spatial dims"),
        (conv_geometry((8, 8), (3, 3)), 0, jnp.float32, {}, "groups (=0)"),
        (
            conv_geometry((2048, 2048), (3, 3)),
            1,
            jnp.float32,
            dict(x_shape=(256, 4, 2048, 2048), w_shape=(8, 4, 3, 3)),
            "beyond int32",
        ),
    ],
)
def test_unsupported_reason_names_what_is_missing(geometry, groups, dtype, shapes, reason):
    assert reason in unsupported_reason(geometry, groups, dtype, **shapes)


def test_blocks_must_be_powers_of_two_of_at_least_16():
    with pytest.raises(ValueError, match=r"block size k \(=24\)"):
        Blocks(16, 16, 24)
    with pytest.raises(ValueError, match=r"block size m \(=8\)"):
        Blocks(8, 16, 16)
    assert choose_blocks(5, 3, 7) == Blocks(16, 16, 16)


# --- Triton (CUDA) lowering without a GPU ----------------------------------------------


def _operations(operation):
    """Every operation nested in an MLIR ``operation``, depth first."""
    for region in operation.regions:
        for block in region.blocks:
            for op in block.operations:
                yield op.operation
                yield from _operations(op.operation)


def _triton_calls(fn, *args):
    """``(target, Triton IR or None)`` for every Pallas kernel in ``fn``, lowered for CUDA on this machine."""
    lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    calls = []
    for op in _operations(lowered.compiler_ir("stablehlo").operation):
        if op.name == "stablehlo.custom_call":
            target = str(op.attributes["call_target_name"]).strip('"')
            if target == "__gpu$xla.gpu.triton":  # jaxlib <= 0.10.2: XLA compiles the IR later
                calls.append((target, op.attributes["mhlo.backend_config"]["ir"].value_bytes))
            elif "triton" in target:  # newer jaxlib: compiled to PTX while lowering
                calls.append((target, None))
    return calls


def _dot_input_precisions(module):
    """The ``inputPrecision`` of every ``tt.dot`` in a Triton IR module (bytecode): "tf32", "ieee", ..."""
    from jax._src.interpreters import mlir
    from jax._src.lib.mlir import ir
    from jax._src.lib.triton import dialect as tt_dialect  # private: the Triton dialect Pallas lowers to

    context = mlir.make_ir_context()
    tt_dialect.register_dialect(context)
    with context:
        dots = [op for op in _operations(ir.Module.parse(module).operation) if op.name == "tt.dot"]
        return [
            tt_dialect.InputPrecision(ir.IntegerAttr(op.attributes["inputPrecision"]).value).name.lower()
            if "inputPrecision" in op.attributes
            else "ieee"  # the attribute's default
            for op in dots
        ]


def _cuda_kernels(dtype, **options):
    """The three kernels on a grouped, strided, padded, dilated 2-D conv: name -> (function, arguments)."""
    geometry = conv_geometry((9, 8), (3, 2), stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2))
    x, w = jnp.zeros((2, 4, 9, 8), dtype), jnp.zeros((6, 2, 3, 2), dtype)
    dout = jnp.zeros((2, 6) + geometry.out_spatial, dtype)
    options = dict(geometry=geometry, groups=2, interpret=False, **options)
    return {
        "forward": (functools.partial(fused_forward, **options), (x, w)),
        "filter_grad": (functools.partial(fused_filter_grad, **options), (x, dout)),
        "input_grad": (functools.partial(fused_input_grad, **options), (dout, w)),
    }


def _triton_module(fn, args):
    """The Triton IR of the one kernel in ``fn``; skips where this jaxlib compiles it while lowering."""
    calls = _triton_calls(fn, *args)
    assert len(calls) == 1, calls
    ((_, module),) = calls
    if module is None:
        pytest.skip("this jaxlib compiles Triton while lowering: no Triton IR to read")
    return module


def _cuda_compiler():
    from jax._src.lib import triton  # private: the plugin's Triton-to-PTX compiler, when registered

    jax.devices()  # initialises installed plugins, which register their compilers
    return triton if triton.has_compilation_handler("cuda") else None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_kernels_lower_to_triton_for_cuda(dtype):
    """The kernels lower through Pallas's Triton backend; with jax-cuda12-plugin, Triton compiles them to PTX.

    Without a GPU the plugin still registers its Triton compiler (set
    ``JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1`` when the CUDA libraries are absent).
    """
    from jax._src.lib import version as jaxlib_version

    compiler = _cuda_compiler()
    if jaxlib_version > (0, 10, 2) and compiler is None:
        pytest.skip("this jaxlib compiles Triton while lowering: needs jax-cuda12-plugin")
    with jax.enable_x64(dtype == "float64"):
        for name, (fn, args) in _cuda_kernels(dtype, precision="highest").items():
            calls = _triton_calls(fn, *args)
            assert len(calls) == 1, (name, calls)
            ((_, module),) = calls
            if compiler is not None and module is not None:
                ptx = compiler.compile("cuda", module, "9.0", num_warps=4, num_ctas=1, num_stages=3).asm
                assert "ld.global" in ptx, name  # the gather: loads through a tensor of pointers
                # mma for bf16 and f64; float32 at HIGHEST is IEEE, on FMAs (TF32 would use mma)
                assert ("mma" in ptx) == (dtype != "float32"), name


@pytest.mark.parametrize(
    ("precision", "default_matmul", "expected"),
    [
        (None, None, "tf32"),  # the backend's default: TF32 on NVIDIA, as for lax's conv
        ("default", "highest", "tf32"),  # an explicit precision wins over jax_default_matmul_precision
        (lax.Precision.HIGH, None, "tf32"),  # Triton has no bf16_3x: HIGH is TF32, as on XLA's GPU GEMMs
        (lax.Precision.HIGHEST, None, "ieee"),
        ("highest", None, "ieee"),
        (("default", "highest"), None, "ieee"),  # a pair: the higher of the two, as XLA's GPU GEMMs take it
        (None, "highest", "ieee"),  # None follows jax_default_matmul_precision, as lax does
        (None, "tensorfloat32", "tf32"),
    ],
)
def test_float32_kernels_follow_precision_in_triton(precision, default_matmul, expected):
    """Each kernel's float32 dot is TF32 by default and IEEE float32 at HIGHEST, read in its Triton IR."""
    with jax.default_matmul_precision(default_matmul):
        for name, (fn, args) in _cuda_kernels("float32", precision=precision).items():
            assert _dot_input_precisions(_triton_module(fn, args)) == [expected], name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_other_dtypes_keep_their_dot_whatever_the_precision(dtype):
    """bfloat16, float16 and float64 tiles ignore ``precision``: the same IR at DEFAULT as at HIGHEST."""
    with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision(None):
        for name in ("forward", "filter_grad", "input_grad"):
            modules = {
                precision: _triton_module(*_cuda_kernels(dtype, precision=precision)[name])
                for precision in (None, "default", "highest")
            }
            assert _dot_input_precisions(modules["default"]) == ["ieee"], name  # not TF32
            assert modules[None] == modules["default"] == modules["highest"], name


# --- through jaxconv.conv(backend="pallas"): the same custom VJP, the same errors ----------------


@pytest.mark.parametrize("name", ["2d-grouped-same", "1d-strided-dilated"])
def test_conv_backend_pallas_matches_lax_and_never_builds_phi(name):
    case = dict(
        {
            "2d-grouped-same": dict(x=(2, 4, 7, 6), w=(6, 2, 3, 2), stride=(1, 2), padding="SAME", groups=2),
            "1d-strided-dilated": dict(x=(2, 3, 11), w=(4, 3, 3), stride=2, padding=((2, 1),), dilation=2),
        }[name]
    )
    rng = np.random.default_rng(7)
    x, w = random_array(rng, case.pop("x")), random_array(rng, case.pop("w"))
    b = random_array(rng, (w.shape[0],))
    loss = lambda conv: lambda x, w, b: jnp.sum(jnp.sin(conv(x, w, b, **case)))
    ours = jax.value_and_grad(loss(functools.partial(jaxconv.conv, backend="pallas")), argnums=(0, 1, 2))(x, w, b)
    ref = jax.value_and_grad(loss(functools.partial(jaxconv.lax_conv, precision="highest")), argnums=(0, 1, 2))(x, w, b)
    for actual, expected in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        assert_close(actual, expected)
    grad = jax.grad(loss(functools.partial(jaxconv.conv, backend="pallas")), argnums=(0, 1))
    names = primitive_names(jax.make_jaxpr(grad)(x, w, b))
    assert "conv_general_dilated" not in names and NOTE_BACKWARD <= names, names
    # What each primitive lowers to: a Pallas kernel, and no gather of phi around it.
    spec = conv_spec(x, w, b, **case, backend="pallas")
    dout = jnp.ones((x.shape[0], w.shape[0]) + spec.geometry.out_spatial)
    for lowering, args in ((_forward, (x, w)), (_transposed_forward, (dout, w)), (_filter_grad, (x, dout))):
        names = primitive_names(jax.make_jaxpr(functools.partial(lowering, spec))(*args))
        assert "pallas_call" in names and "gather" not in names and "conv_general_dilated" not in names, names


def test_conv_backend_pallas_refuses_what_it_cannot_run_and_auto_falls_back():
    x, w = jnp.ones((1, 2, 5, 5), jnp.complex64), jnp.ones((3, 2, 3, 3), jnp.complex64)
    with pytest.raises(ValueError, match="backend='pallas' does not support this convolution: .*complex64"):
        jaxconv.conv(x, w, backend="pallas")
    assert jaxconv.conv(x, w, backend="auto").shape == (1, 3, 3, 3)
