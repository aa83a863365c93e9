"""How the note's products are contracted: a GEMM, or a multiply-reduce that XLA fuses with the gather.

Each of the conv's three products (``O_f = phi(I) F_f``, Eq. 1 and Eq. 2) is a
batch of G matmuls, one per group. Two strategies compute them:

* ``"gemm"``: ``jnp.einsum``, a GEMM on phi(I) written to memory by the gather.
  Right when the per-group GEMM has enough work to amortise writing phi.
* ``"multiply_reduce"``: the same sums written as multiplies and adds over
  phi's columns, each kernel offset's block of columns read as one strided
  slice of the padded input (:func:`jaxconv._im2col.window_slabs`), which XLA
  fuses into one loop: phi is never materialised (a gather followed by a
  reduction is not fused by XLA's CPU backend, which writes phi first).
  Right for depthwise and small grouped convs, whose per-group
  GEMM is tiny (a depthwise 3x3 has an inner dimension of 9), and for integer
  and bool convs on GPUs, where cuBLAS has no GEMM for most integer types
  (int16 inputs raise "GEMM is not supported by cublasLt", bool ones crash).

:func:`contraction_for` picks one per conv; :func:`jaxconv.conv_strategy` says
which a given conv would use.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv._geometry import ConvGeometry
from jaxconv._im2col import add_slabs, window_slabs

Contraction = Literal["gemm", "multiply_reduce"]
_GPU_PLATFORMS = ("gpu", "cuda", "rocm")

#: Largest per-group channels x filters (``C/G * FN/G``) contracted by multiply-reduce, per platform.
#: Measured on the CPU (``benchmarks/RESULTS.md``, "Contraction crossover"); GPUs and TPUs have
#: not been measured and take the CPU's value.
MULTIPLY_REDUCE_MAX_GROUP_SIZE = {"cpu": 2}


def contraction_for(platform: str, dtype: Any, channels_per_group: int, filters_per_group: int) -> Contraction:
    """The strategy for a conv with these per-group sizes on ``platform``.

    >>> contraction_for("cpu", jnp.float32, 1, 1)     # depthwise
    'multiply_reduce'
    >>> contraction_for("cpu", jnp.float32, 64, 64)   # a dense layer's GEMM
    'gemm'
    >>> contraction_for("gpu", jnp.int8, 64, 64)      # cuBLAS has no int8 x int8 -> int8 GEMM
    'multiply_reduce'
    """
    if not jnp.issubdtype(dtype, jnp.inexact):
        return "multiply_reduce" if platform in _GPU_PLATFORMS else "gemm"
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return "gemm"
    limit = MULTIPLY_REDUCE_MAX_GROUP_SIZE.get(platform, MULTIPLY_REDUCE_MAX_GROUP_SIZE["cpu"])
    return "multiply_reduce" if 0 < channels_per_group * filters_per_group <= limit else "gemm"


def _accumulation(dtype: Any, preferred: Any) -> tuple[np.dtype, np.dtype]:
    """(accumulate in, return as) for a multiply-reduce of ``dtype`` operands.

    Integers wrap in the output dtype as lax's integer conv does; bool is the OR
    of ANDs (summed as int32); half-precision floats sum in float32, as lax does.
    """
    out = np.dtype(dtype if preferred is None else preferred)
    if out == np.bool_:
        return np.dtype(np.int32), out
    if jnp.issubdtype(out, jnp.floating) and out.itemsize < 4:
        return np.dtype(np.float32), out
    return out, out


def _finish(total: jax.Array, out_dtype: np.dtype) -> jax.Array:
    return total != 0 if out_dtype == np.bool_ else total.astype(out_dtype)


def _per_group(w: jax.Array, groups: int) -> jax.Array:
    """Filters ``(FN, C/G, *k)`` as ``(K, 1, G, FN/G, C/G, 1)``: per kernel offset, one small matrix per group."""
    fn, per_group = w.shape[:2]
    return w.reshape((groups, fn // groups, per_group, -1)).transpose(3, 0, 1, 2)[:, None, ..., None]


def _grouped(images: jax.Array, groups: int, axis: int) -> jax.Array:
    """``(N, G*S, *out)`` as ``(N, G, S, 1, P)`` (``axis=3``) or ``(N, G, 1, S, P)`` (``axis=2``)."""
    batch, features = images.shape[:2]
    return jnp.expand_dims(images.reshape(batch, groups, features // groups, -1), axis)


def multiply_reduce_forward(
    x: jax.Array, w: jax.Array, geometry: ConvGeometry, groups: int, preferred_element_type: Any = None
) -> jax.Array:
    """O_f = phi(I) F_f summed over phi's columns: ``(N, C, *s) x (FN, C/G, *k) -> (N, FN, *out)``.

    Per kernel offset, the slab of phi it reads times that offset's filter taps,
    summed over the group's channels; then summed over the offsets, in one loop.
    """
    acc, out_dtype = _accumulation(x.dtype, preferred_element_type)
    taps = _per_group(w.astype(acc), groups)  # (K, 1, G, FN/G, C/G, 1)
    slabs = window_slabs(x.astype(acc), geometry)
    total = sum((tap * _grouped(slab, groups, 2)).sum(axis=3) for tap, slab in zip(taps, slabs))  # (N, G, FN/G, P)
    return _finish(total.reshape((x.shape[0], w.shape[0]) + geometry.out_spatial), out_dtype)


def multiply_reduce_input_grad(
    dout: jax.Array, w: jax.Array, geometry: ConvGeometry, groups: int, dtype: Any
) -> jax.Array:
    """col2im(dL/dO_f F_f^T) (Eq. 2, then col2im), each offset's slab of dL/dphi made where col2im adds it.

    ``(N, FN, *out) x (FN, C/G, *k) -> (N, C, *in)`` in ``dtype``.
    """
    acc, out_dtype = _accumulation(dtype, None)
    dout_g = _grouped(dout.astype(acc), groups, 3)  # (N, G, FN/G, 1, P)
    shape = (dout.shape[0], w.shape[1] * groups) + geometry.out_spatial
    slabs = [(tap * dout_g).sum(axis=2).reshape(shape) for tap in _per_group(w.astype(acc), groups)]
    return _finish(add_slabs(slabs, geometry), out_dtype)


def multiply_reduce_filter_grad(x: jax.Array, dout: jax.Array, geometry: ConvGeometry, groups: int) -> jax.Array:
    """dL/dF_f = phi(I)^T dL/dO_f (Eq. 1), a slab of phi at a time: ``-> (FN, C/G, *k)``, float32 for half types."""
    acc, _ = _accumulation(dout.dtype, None)
    dout_g = _grouped(dout.astype(acc), groups, 3)  # (N, G, FN/G, 1, P)
    slabs = window_slabs(x.astype(acc), geometry)
    taps = [(_grouped(slab, groups, 2) * dout_g).sum(axis=(0, 4)) for slab in slabs]  # K x (G, FN/G, C/G)
    return jnp.stack(taps, axis=-1).reshape((dout.shape[1], x.shape[1] // groups) + geometry.kernel_size)
