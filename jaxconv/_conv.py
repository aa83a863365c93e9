"""The convolution as im2col + GEMM, with the note's backward pass as its custom VJP.

Each equation of ``bp-for-conv-layer.md`` is one function here:

=================================  ==========================  ===================
note                               shape (per group)           function
=================================  ==========================  ===================
phi(I) = im2col(I)                 (N*OH*OW, C*FH*FW)          ``_im2col_t`` (as phi^T)
F_f = W.reshape(FN, -1).T          (C*FH*FW, FN)               :func:`flatten_filters`
O_f = phi(I) F_f                   (N*OH*OW, FN)               :func:`forward_gemm`
dL/dF_f = phi(I)^T dL/dO_f         (C*FH*FW, FN)               :func:`filter_grad`
dL/dphi(I) = dL/dO_f F_f^T         (N*OH*OW, C*FH*FW)          :func:`cols_grad`
dL/dI = col2im(dL/dphi(I))         (N, C, H, W)                ``_col2im_t``
dL/db = sum over rows of dL/dO_f   (FN,)                       :func:`bias_grad`
=================================  ==========================  ===================

The N images of a batch are stacked as rows of phi(I), so dL/dF_f sums over
the batch inside one GEMM.

**Layout.** The arrays are held transposed: ``phi_t = phi(I)^T`` of shape
``(C*FH*FW, N*OH*OW)``, ``out_t = O_f^T`` and ``dout_t = (dL/dO_f)^T`` of shape
``(FN, N*OH*OW)``, one transpose away from the ``(N, FN, OH, OW)`` output.
The equations are the note's, transposed where the layout asks: ``O_f^T =
F_f^T phi^T`` and ``(dL/dphi)^T = F_f (dL/dO_f)^T``. Measured on CPU when the
layout was chosen: the gather writes phi^T's rows whole, and no GEMM contracts
over the leading axis of its left operand (which ran at half the GEMM rate);
cifar2's value_and_grad went from 1.15x to 0.95x of lax's time.

**Filters.** The note writes ``F.reshape(-1, FN)``; that reads the (FN, C,
FH, FW) filters in the wrong order. ``W.reshape(FN, -1).T`` is the matrix
whose column ``f`` is filter ``f`` flattened in im2col's ``(C, FH, FW)`` order.

**Groups.** A grouped convolution (``groups = G``) splits phi's rows of
channels and the filters into G blocks; every array carries a leading group
axis and each GEMM is a batch of G matmuls.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._geometry import ConvGeometry
from jaxconv._im2col import Col2imMethod, _col2im_t, _im2col_t


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Everything static about one convolution: the custom VJP's non-differentiable argument."""

    geometry: ConvGeometry
    groups: int = 1
    precision: Any = None
    preferred_element_type: np.dtype | None = None
    col2im_method: Col2imMethod = "pad_add"
    batch_chunk: int | None = None


# --- the note's equations -----------------------------------------------------


def flatten_filters(w: jax.Array, groups: int) -> jax.Array:
    """F_f = W.reshape(FN, -1).T, per group: ``(FN, C/G, *k) -> (G, C/G*prod(k), FN/G)``.

    >>> w = jnp.arange(2 * 3 * 2 * 2.0).reshape(2, 3, 2, 2)  # FN=2 filters
    >>> bool((flatten_filters(w, 1)[0] == w.reshape(2, -1).T).all())
    True
    """
    fn, per_group = w.shape[:2]
    rows = per_group * int(np.prod(w.shape[2:]))
    return w.reshape(groups, fn // groups, rows).transpose(0, 2, 1)


def unflatten_filters(w_flat: jax.Array, w_shape: tuple[int, ...]) -> jax.Array:
    """The inverse of :func:`flatten_filters`: dL/dF_f back to the filters' shape."""
    return w_flat.transpose(0, 2, 1).reshape(w_shape)


def _grouped(phi_t: jax.Array, groups: int) -> jax.Array:
    """phi^T ``(C*K, M)`` as ``(G, C/G*K, M)``: phi's columns are channel-major, so groups are contiguous."""
    return phi_t.reshape(groups, phi_t.shape[0] // groups, phi_t.shape[1])


def forward_gemm(
    phi_t: jax.Array, w_flat: jax.Array, *, precision: Any = None, preferred_element_type: Any = None
) -> jax.Array:
    """O_f = phi(I) F_f, computed as O_f^T = F_f^T phi^T: ``(C*K, M) x (G, J, FN/G) -> (G, FN/G, M)``.

    >>> phi = jnp.arange(6.0).reshape(3, 2)        # M=3 windows, C*K=2
    >>> f_f = jnp.array([[1.0], [10.0]])[None]     # one group, FN=1
    >>> forward_gemm(phi.T, f_f)[0, 0]             # phi @ F_f
    Array([10., 32., 54.], dtype=float32)
    """
    # Written with F_f^T, which is W's own row-major layout: given F_f (J, FN), XLA's CPU backend kept that
    # layout and ran a transposed-operand GEMM at half the rate (conv1x1's forward 36 -> 24 ms).
    return jnp.einsum(
        "goj,gjm->gom",
        w_flat.swapaxes(1, 2),
        _grouped(phi_t, w_flat.shape[0]),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def filter_grad(
    phi_t: jax.Array, dout_t: jax.Array, *, precision: Any = None, preferred_element_type: Any = None
) -> jax.Array:
    """dL/dF_f = phi(I)^T dL/dO_f, summed over all rows (every image): ``-> (G, J, FN/G)``."""
    return jnp.einsum(
        "gjm,gom->gjo",
        _grouped(phi_t, dout_t.shape[0]),
        dout_t,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def cols_grad(
    dout_t: jax.Array, w_flat: jax.Array, *, precision: Any = None, preferred_element_type: Any = None
) -> jax.Array:
    """dL/dphi(I) = dL/dO_f F_f^T, computed as its transpose F_f dL/dO_f^T: ``-> (C*K, M)``, phi^T's layout."""
    dphi_t = jnp.einsum(
        "gjo,gom->gjm",
        w_flat,
        dout_t,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    groups, per_group, rows = dphi_t.shape
    return dphi_t.reshape(groups * per_group, rows)


def bias_grad(dout_t: jax.Array) -> jax.Array:
    """dL/db: every row of O_f adds b, so its gradient sums dL/dO_f over the rows: ``-> (FN,)``."""
    return dout_t.sum(axis=2).reshape(-1)


# --- layout between O_f^T and the (N, FN, *out) output ---------------------------


def _to_output(out_t: jax.Array, geometry: ConvGeometry, batch: int) -> jax.Array:
    """O_f^T ``(G, FN/G, N*P)`` -> ``(N, FN, *out_spatial)``."""
    fn = out_t.shape[0] * out_t.shape[1]
    out = out_t.reshape(fn, batch, geometry.num_windows).swapaxes(0, 1)
    return out.reshape((batch, fn) + geometry.out_spatial)


def _from_output(dout: jax.Array, spec: ConvSpec) -> jax.Array:
    """dL/dO ``(N, FN, *out_spatial)`` -> dL/dO_f^T ``(G, FN/G, N*P)``: the adjoint of :func:`_to_output`."""
    batch, fn = dout.shape[:2]
    rows = dout.reshape(batch, fn, spec.geometry.num_windows).swapaxes(0, 1)
    return rows.reshape(spec.groups, fn // spec.groups, batch * spec.geometry.num_windows)


def add_bias(out: jax.Array, b: jax.Array | None) -> jax.Array:
    """``out + b`` with ``b`` of shape (FN,) on the feature axis of ``(N, FN, *out)``."""
    if b is None:
        return out
    return out + b.astype(out.dtype).reshape((1, b.shape[0]) + (1,) * (out.ndim - 2))


# --- forward and the custom VJP ---------------------------------------------------


def _over_batch_chunks(body, carry, arrays, chunk):
    """``carry, y = body(carry, *chunk_of_arrays)`` over the batch axis, ``chunk`` images at a time.

    Full chunks go through one ``lax.scan`` (so phi(I) exists for one chunk at a
    time), the remainder through one more call; the ``y`` are concatenated.
    """
    batch = arrays[0].shape[0]
    if chunk is None or chunk >= batch:
        return body(carry, *arrays)
    full = batch - batch % chunk
    stacked = [a[:full].reshape((full // chunk, chunk) + a.shape[1:]) for a in arrays]
    carry, ys = lax.scan(lambda c, xs: body(c, *xs), carry, stacked)
    ys = ys.reshape((full,) + ys.shape[2:])
    if full == batch:
        return carry, ys
    carry, tail = body(carry, *[a[full:] for a in arrays])
    return carry, jnp.concatenate([ys, tail])


def conv_forward(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    """The forward pass, ``(N, C, *s) x (FN, C/G, *k) -> (N, FN, *out)``, with no VJP attached."""
    w_flat = flatten_filters(w, spec.groups)  # F_f

    def chunk_forward(carry, x_chunk):
        phi_t = _im2col_t(x_chunk, spec.geometry)  # phi(I)^T
        out_t = forward_gemm(  # O_f = phi(I) F_f
            phi_t, w_flat, precision=spec.precision, preferred_element_type=spec.preferred_element_type
        )
        return carry, _to_output(out_t, spec.geometry, x_chunk.shape[0])

    _, out = _over_batch_chunks(chunk_forward, (), [x], spec.batch_chunk)
    return add_bias(out, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv_vjp(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    """:func:`conv_forward` whose backward pass is the note's formulas (:func:`_conv_bwd`)."""
    return conv_forward(x, w, b, spec)


def _conv_fwd(x, w, b, spec):
    # The forward keeps x, not phi(I), and the backward rebuilds phi chunk by
    # chunk: phi is FH*FW/stride^2 times the size of x, and holding it between
    # the passes costs that memory for no speed (benchmarks/RESULTS.md).
    return conv_forward(x, w, b, spec), (x, w, b)


def _conv_bwd(spec, residuals, dout):
    x, w, b = residuals
    options = dict(precision=spec.precision, preferred_element_type=dout.dtype)
    w_flat = flatten_filters(w, spec.groups).astype(dout.dtype)  # F_f

    def chunk_backward(dw_flat, x_chunk, dout_chunk):
        phi_t = _im2col_t(x_chunk, spec.geometry).astype(dout.dtype)  # phi(I)^T
        dout_t = _from_output(dout_chunk, spec)  # dL/dO_f^T
        dw_flat = dw_flat + filter_grad(phi_t, dout_t, **options)  # phi(I)^T dL/dO_f
        dphi_t = cols_grad(dout_t, w_flat, **options)  # dL/dO_f F_f^T
        dx = _col2im_t(dphi_t, spec.geometry, x_chunk.shape[0], spec.col2im_method)  # col2im(dL/dphi)
        return dw_flat, dx

    dw_flat, dx = _over_batch_chunks(chunk_backward, jnp.zeros_like(w_flat), [x, dout], spec.batch_chunk)
    dw = unflatten_filters(dw_flat, w.shape)
    db = None if b is None else bias_grad(_from_output(dout, spec)).astype(b.dtype)
    return dx.astype(x.dtype), dw.astype(w.dtype), db


conv_vjp.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.jit, static_argnames=("spec",))
def apply_conv(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    """Jitted entry point: the custom VJP for inexact dtypes, the plain forward for integers."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return conv_vjp(x, w, b, spec)
    return conv_forward(x, w, b, spec)
