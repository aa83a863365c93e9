"""The note's three GEMMs as fused Pallas kernels: phi(I) is gathered tile by tile, never materialised.

=====================================  ==========================================  ===========================
note                                   fused as                                    function
=====================================  ==========================================  ===========================
O_f = phi(I) F_f                       gather phi tiles from the padded input      :func:`fused_forward`
dL/dF_f = phi(I)^T dL/dO_f             gather phi^T tiles, reduce over all rows    :func:`fused_filter_grad`
dL/dI = col2im(dL/dO_f F_f^T)          per input pixel, gather the dL/dO_f rows    :func:`fused_input_grad`
                                       that read it (transposed conv, gather form)
=====================================  ==========================================  ===========================

Arrays keep the canonical layouts of :mod:`jaxconv._conv`: ``x`` is
``(N, C, *spatial)``, ``w`` is ``(FN, C/G, *kernel)``, the output ``(N, FN,
*out_spatial)``. Inside, each is re-laid channels-last, one flat row per
group, for the kernel of :mod:`jaxconv._pallas.kernels`; phi's columns are
ordered ``(*kernel, c)`` so that one pixel's channels are contiguous, and F_f's
rows follow.

dL/dI is the gather form of col2im: each input pixel pulls the rows of dL/dO_f
that read it, through a NumPy table (:func:`~jaxconv._pallas.indices.window_taps`).
The scatter form (each dL/dphi tile added onto the pixels it read with
``pl.atomic_add``) has two traps in interpret mode: an address repeated inside
one call keeps only the last update, and an output written only by atomics
starts as garbage unless aliased to zeros.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._geometry import ConvGeometry
from jaxconv._im2col import pad_input
from jaxconv._pallas.indices import MAX_ADDRESS, phi_offsets, tap_offsets
from jaxconv._pallas.kernels import Blocks, choose_blocks, gather_gemm
from jaxconv._validate import as_precision

#: dtypes the kernels take; float64 needs ``jax_enable_x64``.
SUPPORTED_DTYPES = ("float16", "bfloat16", "float32", "float64")


def unsupported_reason(
    geometry: ConvGeometry,
    groups: int,
    dtype: Any,
    *,
    x_shape: tuple[int, ...] | None = None,
    w_shape: tuple[int, ...] | None = None,
) -> str | None:
    """Why the fused kernels cannot run this convolution, or None when they can.

    Args:
      geometry: the convolution.
      groups: feature groups.
      dtype: the inputs' dtype.
      x_shape, w_shape: when given, also checks that every address fits int32.

    >>> from jaxconv._geometry import conv_geometry
    >>> unsupported_reason(conv_geometry((8, 8), (3, 3)), 1, jnp.float32) is None
    True
    >>> unsupported_reason(conv_geometry((8, 8), (3, 3)), 1, jnp.complex64)
    'dtype complex64 is not one of float16, bfloat16, float32, float64'
    """
    name = jnp.dtype(dtype).name
    if name not in SUPPORTED_DTYPES:
        return f"dtype {name} is not one of {', '.join(SUPPORTED_DTYPES)}"
    if geometry.ndim not in (1, 2, 3):
        return f"{geometry.ndim} spatial dims: the fused kernels take 1, 2 or 3"
    if groups < 1:
        return f"groups (={groups}) must be >= 1"
    if geometry.num_windows == 0 or math.prod(geometry.in_spatial) == 0:
        return f"empty convolution: input {geometry.in_spatial}, output {geometry.out_spatial}"
    if x_shape is not None and w_shape is not None:
        batch, channels = x_shape[:2]
        padded = batch * math.prod(geometry.padded_spatial) * channels
        out = batch * (geometry.num_windows + 1) * w_shape[0]
        if max(padded, out) > MAX_ADDRESS:
            return f"x {x_shape} / w {w_shape} need addresses beyond int32 ({max(padded, out)} elements)"
    return None


def _interpret(interpret: bool | None) -> bool:
    """None: the interpreter unless the default backend is a GPU (Triton)."""
    return jax.default_backend() != "gpu" if interpret is None else bool(interpret)


# --- layouts: canonical arrays <-> the kernels' grouped, channels-last operands ----------


def _padded_pixels(x: jax.Array, geometry: ConvGeometry, groups: int) -> jax.Array:
    """``(N, C, *spatial)`` -> ``(G, N*prod(padded)*C/G)``: padded, channels-last, one flat row per group."""
    padded = pad_input(x, geometry)
    batch, channels = x.shape[:2]
    n = geometry.ndim
    grouped = padded.reshape((batch, groups, channels // groups) + geometry.padded_spatial)
    flat = batch * math.prod(geometry.padded_spatial) * (channels // groups)
    return grouped.transpose((1, 0) + tuple(range(3, n + 3)) + (2,)).reshape(groups, flat)


def _out_rows(dout: jax.Array, groups: int) -> jax.Array:
    """``(N, FN, *out)`` -> ``(G, N, P, FN/G)``: dL/dO_f per group, rows (n, *out), features last."""
    batch, features = dout.shape[:2]
    rows = dout.reshape(batch, groups, features // groups, math.prod(dout.shape[2:]))
    return rows.transpose(1, 0, 3, 2)


def _from_out_rows(rows: jax.Array, geometry: ConvGeometry, batch: int) -> jax.Array:
    """``(G, N*P, FN/G)`` -> ``(N, FN, *out)``: the inverse of :func:`_out_rows`."""
    groups, _, per_group = rows.shape
    out = rows.reshape(groups, batch, geometry.num_windows, per_group).transpose(1, 0, 3, 2)
    return out.reshape((batch, groups * per_group) + geometry.out_spatial)


def _kernel_rows(w: jax.Array, groups: int) -> jax.Array:
    """``(FN, C/G, *k)`` -> ``(G, prod(k), C/G, FN/G)``: a filter matrix per group, rows (kernel offset, channel)."""
    features, per_group = w.shape[:2]
    n = w.ndim - 2
    grouped = w.reshape((groups, features // groups, per_group) + w.shape[2:])
    return grouped.transpose((0,) + tuple(range(3, n + 3)) + (2, 1)).reshape(
        groups, math.prod(w.shape[2:]), per_group, features // groups
    )


# --- the three fused GEMMs ------------------------------------------------------------------


def _common_dtype(a: Any, b: Any) -> np.dtype:
    """The dtype both operands are cast to, by JAX's standard promotion (bfloat16 and float32 -> float32)."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.dtype(jnp.promote_types(a, b))


def _dot_precision(precision: Any, dtype: Any) -> Any:
    """The kernels' ``jnp.dot`` precision: ``precision`` as lax reads it, for float32 operands.

    None stays None: ``jax_default_matmul_precision``, else the backend's
    default (TF32 on NVIDIA Ampere and later). An ``(lhs, rhs)`` pair counts
    as the higher of the two, as XLA's GPU GEMMs read lax's pairs; Triton's
    lowering of a pair would take TF32 when either is below HIGHEST. Other
    dtypes keep HIGHEST: bfloat16 and float16 tiles multiply exactly into the
    float32 accumulator whatever the precision, and float64 has no TF32.

    >>> _dot_precision(("default", "highest"), jnp.float32)
    Precision.HIGHEST
    >>> _dot_precision(None, jnp.float32) is None
    True
    >>> _dot_precision(None, jnp.bfloat16)
    Precision.HIGHEST
    """
    if jnp.dtype(dtype) != jnp.float32:
        return lax.Precision.HIGHEST
    precision = as_precision(precision)
    if isinstance(precision, tuple):
        return max(precision, key=lambda p: p.value)
    return precision


@functools.partial(
    jax.jit, static_argnames=("geometry", "groups", "preferred_element_type", "precision", "interpret", "blocks")
)
def fused_forward(
    x: jax.Array,
    w: jax.Array,
    geometry: ConvGeometry,
    groups: int,
    *,
    preferred_element_type: Any = None,
    precision: Any = None,
    interpret: bool | None = None,
    blocks: Blocks | None = None,
) -> jax.Array:
    """O_f = phi(I) F_f with phi(I) gathered from the padded input inside the GEMM. No bias.

    Args:
      x: images ``(N, C, *spatial)``.
      w: filters ``(FN, C/G, *kernel)``.
      geometry: the convolution; ``geometry.in_spatial == x.shape[2:]``.
      groups: feature groups G.
      preferred_element_type: the output dtype (default: the inputs' common
        dtype). Products accumulate in float32 (float64 for float64) either way.
      precision: for float32 operands, as lax's: None (the backend's default,
        TF32 on NVIDIA Ampere and later, or ``jax_default_matmul_precision``),
        a ``lax.Precision`` or its name (HIGHEST: full float32), a tuple
        ``(lhs, rhs)`` (the higher of the two), or a ``lax.DotAlgorithmPreset``
        Triton lowers. Other dtypes ignore it.
      interpret: Pallas's interpreter (True) or Triton (False); None: Triton
        exactly when the default backend is a GPU.
      blocks: tile sizes; None chooses them with :func:`choose_blocks`.

    Returns:
      ``(N, FN, *out_spatial)``.
    """
    batch, channels = x.shape[:2]
    dtype = _common_dtype(x.dtype, w.dtype)
    out_dtype = dtype if preferred_element_type is None else jnp.dtype(preferred_element_type)
    row_base, col_off = phi_offsets(geometry, batch, channels // groups)  # phi's rows and columns
    f_f = _kernel_rows(w, groups).astype(dtype)  # F_f, rows (kernel offset, channel)
    f_f = f_f.reshape(groups, col_off.size, f_f.shape[-1])
    blocks = blocks or choose_blocks(row_base.size, f_f.shape[2], col_off.size)
    src = _padded_pixels(x.astype(dtype), geometry, groups)
    out_rows = gather_gemm(  # O_f = phi(I) F_f
        src,
        f_f,
        row_base,
        col_off,
        blocks=blocks,
        out_dtype=out_dtype,
        precision=_dot_precision(precision, dtype),
        interpret=_interpret(interpret),
    )
    return _from_out_rows(out_rows, geometry, batch)


@functools.partial(jax.jit, static_argnames=("geometry", "groups", "precision", "interpret", "blocks"))
def fused_filter_grad(
    x: jax.Array,
    dout: jax.Array,
    geometry: ConvGeometry,
    groups: int,
    *,
    precision: Any = None,
    interpret: bool | None = None,
    blocks: Blocks | None = None,
) -> jax.Array:
    """dL/dF_f = phi(I)^T dL/dO_f, phi^T gathered tile by tile, summed over every window of every image.

    Args:
      x: images ``(N, C, *spatial)``.
      dout: dL/dO ``(N, FN, *out_spatial)``.
      geometry, groups, precision, interpret, blocks: as for :func:`fused_forward`.

    Returns:
      dL/dW ``(FN, C/G, *kernel)`` in the common dtype of ``x`` and ``dout``.
    """
    batch, channels = x.shape[:2]
    features = dout.shape[1]
    dtype = _common_dtype(x.dtype, dout.dtype)
    row_base, col_off = phi_offsets(geometry, batch, channels // groups)
    dout_f = _out_rows(dout.astype(dtype), groups).reshape(groups, row_base.size, features // groups)  # dL/dO_f
    blocks = blocks or choose_blocks(col_off.size, features // groups, row_base.size, split=True)
    src = _padded_pixels(x.astype(dtype), geometry, groups)
    # phi^T's rows are phi's columns: the same two vectors, swapped.
    df_f = gather_gemm(  # dL/dF_f = phi(I)^T dL/dO_f
        src,
        dout_f,
        col_off,
        row_base,
        blocks=blocks,
        out_dtype=dtype,
        precision=_dot_precision(precision, dtype),
        interpret=_interpret(interpret),
    )
    n = geometry.ndim
    df_f = df_f.reshape((groups,) + geometry.kernel_size + (channels // groups, features // groups))
    dw = df_f.transpose((0, n + 2, n + 1) + tuple(range(1, n + 1)))
    return dw.reshape((features, channels // groups) + geometry.kernel_size)


@functools.partial(jax.jit, static_argnames=("geometry", "groups", "precision", "interpret", "blocks"))
def fused_input_grad(
    dout: jax.Array,
    w: jax.Array,
    geometry: ConvGeometry,
    groups: int,
    *,
    precision: Any = None,
    interpret: bool | None = None,
    blocks: Blocks | None = None,
) -> jax.Array:
    """dL/dI = col2im(dL/dO_f F_f^T) in gather form: each input pixel gathers the dL/dO_f rows that read it.

    Row ``(n, q)`` of the implicit left operand holds, for each kernel offset
    ``t``, dL/dO_f at the output position that read pixel ``q`` through ``t``
    (a zero row where none did), so one GEMM with ``F_f^T`` (rows ``(t, f)``)
    adds every window's ``dL/dphi`` entry for that pixel: col2im without a
    scatter, and without dL/dphi.

    Args:
      dout: dL/dO ``(N, FN, *out_spatial)``.
      w: filters ``(FN, C/G, *kernel)``.
      geometry, groups, precision, interpret, blocks: as for :func:`fused_forward`.

    Returns:
      dL/dI ``(N, C, *in_spatial)`` in the common dtype of ``dout`` and ``w``.
    """
    batch, features = dout.shape[:2]
    per_group = w.shape[1]
    dtype = _common_dtype(dout.dtype, w.dtype)
    gather = tap_offsets(geometry, batch, features // groups)
    rows = _out_rows(dout.astype(dtype), groups)
    src = jnp.pad(rows, ((0, 0), (0, 0), (0, 1), (0, 0)))  # one zero row per image
    src = src.reshape(groups, math.prod(src.shape[1:]))
    # F_f^T with rows (kernel offset, feature): the filters' matrix, transposed within each kernel offset.
    f_t = _kernel_rows(w, groups).astype(dtype).swapaxes(2, 3).reshape(groups, gather.col_off.size, per_group)
    blocks = blocks or choose_blocks(gather.row_base.size, per_group, gather.col_off.size)
    dx_rows = gather_gemm(  # col2im(dL/dO_f F_f^T), gathered per input pixel
        src,
        f_t,
        gather.row_base,
        gather.col_off,
        gather,
        blocks=blocks,
        out_dtype=dtype,
        precision=_dot_precision(precision, dtype),
        interpret=_interpret(interpret),
    )
    n = geometry.ndim
    dx = dx_rows.reshape((groups, batch) + geometry.in_spatial + (per_group,))
    dx = dx.transpose((1, 0, n + 2) + tuple(range(2, n + 2)))
    return dx.reshape((batch, groups * per_group) + geometry.in_spatial)
