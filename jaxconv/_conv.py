"""The convolution as im2col + GEMM, and the drivers of the note's backward pass.

Each equation of the note (Jiashu Xu, "BP for convolutional layer") is one function, and these are the
functions the conv calls (XLA backend; ``backend="pallas"`` fuses the same
three GEMMs with their im2col/col2im, :mod:`jaxconv._pallas`):

==============================  ====================  =======================================
note                            shape (per group)     function
==============================  ====================  =======================================
phi(I) = im2col(I)              (N*OH*OW, C*FH*FW)    :func:`jaxconv.im2col_t` (as phi^T)
F_f = W.reshape(FN, -1).T       (C*FH*FW, FN)         :func:`flatten_filters`
O_f = phi(I) F_f                (N*OH*OW, FN)         :func:`forward_gemm`
dL/dF_f = phi(I)^T dL/dO_f      (C*FH*FW, FN)         :func:`filter_grad` (Eq. 1)
dL/dphi(I) = dL/dO_f F_f^T      (N*OH*OW, C*FH*FW)    :func:`cols_grad` (Eq. 2)
dL/dI = col2im(dL/dphi(I))      (N, C, H, W)          :func:`jaxconv.col2im_t`
dL/db = sum over rows of dL/dO  (FN,)                 :func:`bias_grad`
==============================  ====================  =======================================

The N images of a batch are stacked as rows of phi(I), so dL/dF_f sums over
the batch inside one GEMM.

**Layout.** The arrays are held transposed: ``phi_t = phi(I)^T`` of shape
``(C*FH*FW, N*OH*OW)``, ``out_t = O_f^T`` and ``dout_t = (dL/dO_f)^T`` of shape
``(FN, N*OH*OW)``, one transpose away from the ``(N, FN, OH, OW)`` output.
The equations are the note's, transposed where the layout asks: ``O_f^T =
F_f^T phi^T`` and ``(dL/dphi)^T = F_f (dL/dO_f)^T``. The gather writes phi^T's
rows whole and no GEMM contracts over its left operand's leading axis
(``benchmarks/RESULTS.md``, "Design choices").

**Filters.** The note writes ``F.reshape(-1, FN)``; that reads the (FN, C,
FH, FW) filters in the wrong order. ``W.reshape(FN, -1).T`` is the matrix
whose column ``f`` is filter ``f`` flattened in im2col's ``(C, FH, FW)`` order.

**Groups.** A grouped convolution (``groups = G``) splits phi's rows of
channels and the filters into G blocks; every array carries a leading group
axis and each GEMM is a batch of G matmuls.

**Registration.** JAX is told the backward by :mod:`jaxconv._primitives`: the
drivers :func:`_forward` (O_f = phi F_f), :func:`_transposed_forward` (Eq. 2,
then col2im) and :func:`_filter_grad` (Eq. 1) are what its three bilinear
primitives lower to, each the transpose of the other two. :func:`jaxconv._custom_vjp.conv_vjp`
registers the same drivers as a ``jax.custom_vjp`` (reverse mode only).

**Contraction.** Depthwise convs sum the same products by multiply-reduce over
phi's columns instead of a GEMM (:mod:`jaxconv._contraction`).

**Memory.** phi is built a chunk of images at a time (:mod:`jaxconv._budget`),
in the forward and again in the backward, which keeps x rather than phi.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._batching import match_varying_axes, over_batch_chunks
from jaxconv._budget import CPU_MAX_COLS_BYTES, batch_chunk, cols_bytes_per_image
from jaxconv._contraction import (
    Contraction,
    multiply_reduce_filter_grad,
    multiply_reduce_forward,
    multiply_reduce_input_grad,
)
from jaxconv._geometry import ConvGeometry
from jaxconv._im2col import Col2imMethod, col2im_t, im2col_t

Backend = Literal["xla", "pallas"]


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Everything static about one convolution: the primitives' (and the custom VJP's) static parameter.

    ``preferred_element_type`` is a dtype's *name*: NumPy compares a dtype
    equal to None, so two specs holding ``float64`` and None would compare
    equal and share one compiled function (:func:`jaxconv._validate.dtype_name`).
    """

    geometry: ConvGeometry
    groups: int = 1
    precision: Any = None
    preferred_element_type: str | None = None
    col2im_method: Col2imMethod = "pad_add"
    max_cols_bytes: int | None = CPU_MAX_COLS_BYTES
    devices: int = 1
    backend: Backend = "xla"
    contraction: Contraction = "gemm"

    def __post_init__(self) -> None:
        if not isinstance(self.preferred_element_type, (str, type(None))):
            raise TypeError(
                f"ConvSpec.preferred_element_type must be a dtype name or None, got {self.preferred_element_type!r}"
            )


# --- the note's equations -----------------------------------------------------


def flatten_filters(w: jax.Array, groups: int) -> jax.Array:
    """F_f = W.reshape(FN, -1).T, per group: ``(FN, C/G, *k) -> (G, C/G*prod(k), FN/G)``.

    >>> w = jnp.arange(2 * 3 * 2 * 2.0).reshape(2, 3, 2, 2)  # FN=2 filters
    >>> bool((flatten_filters(w, 1)[0] == w.reshape(2, -1).T).all())
    True
    """
    fn, per_group = w.shape[:2]
    rows = per_group * math.prod(w.shape[2:])
    return w.reshape(groups, fn // groups, rows).transpose(0, 2, 1)


def unflatten_filters(w_flat: jax.Array, w_shape: tuple[int, ...]) -> jax.Array:
    """The inverse of :func:`flatten_filters`: dL/dF_f back to the filters' shape."""
    return w_flat.transpose(0, 2, 1).reshape(w_shape)


def _grouped(phi_t: jax.Array, groups: int) -> jax.Array:
    """phi^T ``(C*K, M)`` as ``(G, C/G*K, M)``: phi's columns are channel-major, so groups are contiguous."""
    return phi_t.reshape(groups, phi_t.shape[0] // groups, phi_t.shape[1])


def forward_gemm(
    phi_t: jax.Array,
    w_flat: jax.Array,
    *,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
) -> jax.Array:
    """O_f = phi(I) F_f, computed as O_f^T = F_f^T phi^T: ``(C*K, M) x (G, J, FN/G) -> (G, FN/G, M)``.

    >>> phi = jnp.arange(6.0).reshape(3, 2)        # M=3 windows, C*K=2
    >>> f_f = jnp.array([[1.0], [10.0]])[None]     # one group, FN=1
    >>> forward_gemm(phi.T, f_f)[0, 0]             # phi @ F_f
    Array([10., 32., 54.], dtype=float32)
    """
    # F_f^T is W's own row-major layout, which XLA's CPU GEMM reads fastest (RESULTS.md, "Design choices").
    w_flat_t, phi_t = w_flat.swapaxes(1, 2), _grouped(phi_t, w_flat.shape[0])
    return jnp.einsum(
        "goj,gjm->gom", w_flat_t, phi_t, precision=precision, preferred_element_type=preferred_element_type
    )


def filter_grad(
    phi_t: jax.Array,
    dout_t: jax.Array,
    *,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
) -> jax.Array:
    """dL/dF_f = phi(I)^T dL/dO_f (from the note's Eq. 1), summed over all rows (every image): ``-> (G, J, FN/G)``.

    >>> phi = jnp.arange(6.0).reshape(3, 2)
    >>> dout = jnp.ones((3, 1))
    >>> filter_grad(phi.T, dout.T[None])[0]        # phi.T @ dout
    Array([[6.],
           [9.]], dtype=float32)
    """
    return jnp.einsum(
        "gjm,gom->gjo",
        _grouped(phi_t, dout_t.shape[0]),
        dout_t,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def cols_grad(
    dout_t: jax.Array,
    w_flat: jax.Array,
    *,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
) -> jax.Array:
    """dL/dphi(I) = dL/dO_f F_f^T (from the note's Eq. 2), as its transpose F_f dL/dO_f^T: ``-> (C*K, M)``.

    >>> f_f = jnp.array([[1.0], [10.0]])[None]
    >>> cols_grad(jnp.ones((1, 1, 3)), f_f)        # (dout @ F_f.T).T
    Array([[ 1.,  1.,  1.],
           [10., 10., 10.]], dtype=float32)
    """
    dphi_t = jnp.einsum(
        "gjo,gom->gjm", w_flat, dout_t, precision=precision, preferred_element_type=preferred_element_type
    )
    groups, per_group, rows = dphi_t.shape
    return dphi_t.reshape(groups * per_group, rows)


def bias_grad(dout_t: jax.Array) -> jax.Array:
    """dL/db: every row of O_f adds b, so its gradient sums dL/dO_f over the rows: ``-> (FN,)``."""
    return dout_t.sum(axis=2).reshape(-1)


# --- layout between O_f^T and the (N, FN, *out) output ---------------------------


def to_output(out_t: jax.Array, geometry: ConvGeometry, batch: int) -> jax.Array:
    """O_f^T ``(G, FN/G, N*P)`` -> ``(N, FN, *out_spatial)``."""
    fn = out_t.shape[0] * out_t.shape[1]
    out = out_t.reshape(fn, batch, geometry.num_windows).swapaxes(0, 1)
    return out.reshape((batch, fn) + geometry.out_spatial)


def from_output(dout: jax.Array, geometry: ConvGeometry, groups: int) -> jax.Array:
    """dL/dO ``(N, FN, *out_spatial)`` -> dL/dO_f^T ``(G, FN/G, N*P)``: the adjoint of :func:`to_output`."""
    batch, fn = dout.shape[:2]
    rows = dout.reshape(batch, fn, geometry.num_windows).swapaxes(0, 1)
    return rows.reshape(groups, fn // groups, batch * geometry.num_windows)


def add_bias(out: jax.Array, b: jax.Array | None) -> jax.Array:
    """``out + b`` with ``b`` of shape (FN,) on the feature axis of ``(N, FN, *out)``."""
    if b is None:
        return out
    return out + b.astype(out.dtype).reshape((1, b.shape[0]) + (1,) * (out.ndim - 2))


# --- chunks of the batch ---------------------------------------------------------


def phi_bytes_per_image(spec: ConvSpec, channels: int, x_dtype: Any) -> int:
    """Bytes of one image's phi(I), in the wider of x's dtype and the accumulation dtype.

    The backward casts phi to dL/dO's dtype, the accumulation dtype; one size serves both passes.
    """
    preferred = spec.preferred_element_type
    itemsize = max(np.dtype(x_dtype).itemsize, 0 if preferred is None else np.dtype(preferred).itemsize)
    return cols_bytes_per_image(spec.geometry, channels, itemsize)


def chunk_size(spec: ConvSpec, x_shape: tuple[int, ...], x_dtype: Any) -> int | None:
    """Images per chunk of this conv's phi(I) (None: the whole batch at once); ``x_shape`` starts ``(N, C)``."""
    batch, channels = x_shape[:2]
    per_image = phi_bytes_per_image(spec, channels, x_dtype)
    return batch_chunk(batch, per_image, spec.max_cols_bytes, multiple=math.gcd(batch, spec.devices))


def _w_first(precision: Any) -> Any:
    """A ``(lhs, rhs)`` precision pair, given for (x, w) as lax takes it, for a GEMM whose left operand is w."""
    return precision[::-1] if isinstance(precision, tuple) else precision


def _accumulation_dtype(dtype: Any) -> np.dtype:
    """Where sums of many terms run: float32 for half-precision floats, whose sums would drift."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4 else dtype


# --- the note's steps on one chunk of images ---------------------------------------


def _apply_filters(spec: ConvSpec, phi_t: jax.Array, w_flat: jax.Array, batch: int, dtype: Any) -> jax.Array:
    """O = phi(I) F_f, laid out as ``(N, FN, *out)`` in ``dtype`` (None: the operands')."""
    options = dict(precision=_w_first(spec.precision), preferred_element_type=dtype)
    return to_output(forward_gemm(phi_t, w_flat, **options), spec.geometry, batch)


def _spread(spec: ConvSpec, dout_t: jax.Array, w_flat: jax.Array, batch: int, dtype: Any) -> jax.Array:
    """col2im(dL/dO_f F_f^T) (Eq. 2, then col2im) as ``(N, C, *in)`` in ``dtype``.

    Half-precision dL/dphi stays in float32 until col2im has summed the overlapping windows, as lax sums.
    """
    acc = _accumulation_dtype(dtype)
    options = dict(precision=_w_first(spec.precision), preferred_element_type=acc)
    dphi_t = cols_grad(dout_t, w_flat, **options)  # Eq. 2: dL/dO_f F_f^T
    return col2im_t(dphi_t, spec.geometry, batch, spec.col2im_method).astype(dtype)  # col2im(dL/dphi)


def _filter_grad_and(
    spec: ConvSpec, x: jax.Array, w_shape: tuple[int, ...], dout: jax.Array, step: Callable[..., Any]
) -> tuple[Any, jax.Array]:
    """Eq. 1 over the chunks of the batch, summed in float32 for half types, and ``step`` of each chunk.

    ``step(phi_t, dout_t, batch)`` computes the chunk's other gradient from the same phi(I) and dL/dO_f.
    Returns ``(step's outputs for the whole batch, dL/dW)``.
    """
    dw_dtype = _accumulation_dtype(dout.dtype)

    def chunk_backward(dw_flat: jax.Array, x_chunk: jax.Array, dout_chunk: jax.Array) -> tuple[jax.Array, Any]:
        phi_t = im2col_t(x_chunk, spec.geometry).astype(dout.dtype)  # phi(I)^T
        dout_t = from_output(dout_chunk, spec.geometry, spec.groups)  # dL/dO_f^T
        # Eq. 1: phi(I)^T dL/dO_f, summed over the chunks in dw_dtype
        options = dict(precision=spec.precision, preferred_element_type=dw_dtype)
        dw_flat = dw_flat + filter_grad(phi_t, dout_t, **options)
        return dw_flat, step(phi_t, dout_t, x_chunk.shape[0])

    groups, fn = spec.groups, w_shape[0]
    dw_flat = jnp.zeros((groups, math.prod(w_shape[1:]), fn // groups), dw_dtype)
    dw_flat = match_varying_axes(dw_flat, x, dout)[0]  # inside shard_map the loop's carry varies like its inputs
    dw_flat, other = over_batch_chunks(chunk_backward, dw_flat, [x, dout], chunk_size(spec, x.shape, x.dtype))
    return other, unflatten_filters(dw_flat, w_shape)


def _multiply_reduce_filter_grad_and(
    spec: ConvSpec, x: jax.Array, w_shape: tuple[int, ...], dout: jax.Array, step: Callable[..., Any]
) -> tuple[Any, jax.Array]:
    """:func:`_filter_grad_and` for the multiply-reduce contraction: Eq. 1 and ``step(x_chunk, dout_chunk)``.

    phi is never written, but the products each kernel offset reduces are: the chunks bound them as they bound phi.
    """

    def chunk_backward(dw: jax.Array, x_chunk: jax.Array, dout_chunk: jax.Array) -> tuple[jax.Array, Any]:
        dw = dw + multiply_reduce_filter_grad(x_chunk, dout_chunk, spec.geometry, spec.groups)  # Eq. 1
        return dw, step(x_chunk, dout_chunk)

    dw = match_varying_axes(jnp.zeros(w_shape, _accumulation_dtype(dout.dtype)), x, dout)[0]
    dw, other = over_batch_chunks(chunk_backward, dw, [x, dout], chunk_size(spec, x.shape, x.dtype))
    return other, dw


def _after(a: jax.Array, dep: jax.Array) -> jax.Array:
    """``a`` plus an exact zero made from ``dep`` (which broadcasts to it): the same values, once ``dep`` exists.

    XLA merges identical computations (CSE) and hoists independent ones: it would
    share Eq. 1's rebuild of phi(x) with the forward's phi, keeping every layer's
    phi alive from the forward to the backward, and flatten every layer's filters
    before the first conv runs. A dependence it cannot fold away keeps each where
    the note puts it (whole-model temp memory: ``benchmarks/RESULTS.md``, "Whole models").
    """
    if dep.size == 0 or not jnp.issubdtype(a.dtype, jnp.inexact):
        return a
    zero = jnp.where(jnp.isfinite(dep), dep, 0) * 0  # 0 or -0, whatever dep holds: a + zero == a
    return a + zero.astype(a.dtype)


# --- forward and backward, XLA backend ----------------------------------------------


def _forward(spec: ConvSpec, x: jax.Array, w: jax.Array) -> jax.Array:
    """``(N, C, *s) x (FN, C/G, *k) -> (N, FN, *out)``, no bias: phi(I) F_f a chunk of images at a time."""
    if spec.backend == "pallas":
        from jaxconv import _pallas

        return _pallas.fused_forward(
            x,
            w,
            spec.geometry,
            spec.groups,
            preferred_element_type=spec.preferred_element_type,
            precision=spec.precision,
        )
    if spec.devices == 1 and x.size:  # F_f once this layer's input exists (a sharded x would cost a collective)
        w = _after(w, x.reshape(-1)[:1].reshape((1,) * w.ndim))
    w_flat = flatten_filters(w, spec.groups)  # F_f

    def chunk_forward(carry: tuple[()], x_chunk: jax.Array) -> tuple[tuple[()], jax.Array]:
        if spec.contraction == "multiply_reduce":  # phi's slabs, fused or (inside a larger program) per chunk
            return carry, multiply_reduce_forward(x_chunk, w, spec.geometry, spec.groups, spec.preferred_element_type)
        phi_t = im2col_t(x_chunk, spec.geometry)  # phi(I)^T
        return carry, _apply_filters(spec, phi_t, w_flat, x_chunk.shape[0], spec.preferred_element_type)

    _, out = over_batch_chunks(chunk_forward, (), [x], chunk_size(spec, x.shape, x.dtype))
    return out


def _transposed_forward(spec: ConvSpec, d: jax.Array, w: jax.Array) -> jax.Array:
    """The transposed conv, the note read backwards: ``col2im(d_f F_f^T)``, the conv's dL/dI with d as dL/dO.

    ``spec`` describes the conv whose input gradient this is: ``d`` is shaped like its output
    ``(N, FN, *out)``, ``w`` like its filters, and the result like its input ``(N, C, *in)``.
    """
    dtype = d.dtype if spec.preferred_element_type is None else np.dtype(spec.preferred_element_type)
    if spec.backend == "pallas":
        from jaxconv import _pallas

        return _pallas.fused_input_grad(d, w, spec.geometry, spec.groups, precision=spec.precision).astype(dtype)
    w_flat = flatten_filters(w, spec.groups)  # F_f

    def chunk_forward(carry: tuple[()], d_chunk: jax.Array) -> tuple[tuple[()], jax.Array]:
        if spec.contraction == "multiply_reduce":
            return carry, multiply_reduce_input_grad(d_chunk, w, spec.geometry, spec.groups, dtype)
        d_t = from_output(d_chunk, spec.geometry, spec.groups)
        return carry, _spread(spec, d_t, w_flat, d_chunk.shape[0], dtype)

    image = (d.shape[0], w.shape[1] * spec.groups)  # (N, C) of the images the result holds
    _, out = over_batch_chunks(chunk_forward, (), [d], chunk_size(spec, image, d.dtype))
    return out


def _filter_grad(spec: ConvSpec, x: jax.Array, dout: jax.Array) -> jax.Array:
    """Eq. 1 alone, dL/dW = phi(x)^T dL/dO_f over the chunks: ``(N, C, *in) x (N, FN, *out) -> (FN, C/G, *k)``."""
    w_shape = (dout.shape[1], x.shape[1] // spec.groups) + spec.geometry.kernel_size
    if spec.backend == "pallas":
        from jaxconv import _pallas

        return _pallas.fused_filter_grad(x, dout, spec.geometry, spec.groups, precision=spec.precision)
    nothing = lambda *chunk: ()
    first = dout[(slice(None),) + (slice(0, 1),) * (dout.ndim - 1)]  # each image's own: local when sharded
    x = _after(x, first)  # phi(x) rebuilt here, not shared with the forward's (see _after)
    summed = _multiply_reduce_filter_grad_and if spec.contraction == "multiply_reduce" else _filter_grad_and
    dtype = dout.dtype if spec.preferred_element_type is None else spec.preferred_element_type
    return summed(spec, x, w_shape, dout, nothing)[1].astype(dtype)  # summed in float32 for half types
