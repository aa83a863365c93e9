"""The convolution as im2col + GEMM, with the note's backward pass as its custom VJP.

Each equation of ``bp-for-conv-layer.md`` is one function here:

=================================  ==========================  ===================
note                               shape (per group g)         function
=================================  ==========================  ===================
phi(I) = im2col(I)                 (N*OH*OW, C*FH*FW)          ``_im2col``
F_f = W.reshape(FN, -1).T          (C*FH*FW, FN)               :func:`flatten_filters`
O_f = phi(I) F_f                   (N*OH*OW, FN)               :func:`forward_gemm`
dL/dF_f = phi(I)^T dL/dO_f         (C*FH*FW, FN)               :func:`filter_grad`
dL/dphi(I) = dL/dO_f F_f^T         (N*OH*OW, C*FH*FW)          :func:`cols_grad`
dL/dI = col2im(dL/dphi(I))         (N, C, H, W)                ``_col2im``
dL/db = sum over rows of dL/dO_f   (FN,)                       :func:`bias_grad`
=================================  ==========================  ===================

The note writes ``F.reshape(-1, FN)``; that reads the (FN, C, FH, FW) filters
in the wrong order. ``W.reshape(FN, -1).T`` is the matrix whose column ``f``
is filter ``f`` flattened in im2col's ``(C, FH, FW)`` column order.

Grouped convolutions (``groups = G``) split the channels of phi(I) and the
filters into G blocks and run the same equations as a batch of G GEMMs: every
array carries a group axis ``g``. The N images are stacked as rows, so
``dL/dF_f`` sums over the whole batch in one GEMM.
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
from jaxconv._im2col import Col2imMethod, _col2im, _im2col


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
    """F_f = W.reshape(FN, -1).T, per group: ``(FN, C/G, *k) -> (G, C/G*prod(k), FN/G)``."""
    fn, cin = w.shape[:2]
    rows = cin * int(np.prod(w.shape[2:]))
    return w.reshape(groups, fn // groups, rows).transpose(0, 2, 1)


def unflatten_filters(w_flat: jax.Array, w_shape: tuple[int, ...]) -> jax.Array:
    """The inverse of :func:`flatten_filters`: dL/dF_f back to the filters' shape."""
    return w_flat.transpose(0, 2, 1).reshape(w_shape)


def _grouped(cols: jax.Array, groups: int) -> jax.Array:
    """phi(I) of N images ``(N, P, C*K)`` as ``(G, N*P, C/G*K)``: images stacked as rows, channels split by group.

    The group axis leads so each GEMM below is a plain batched matmul (a
    group axis in the middle costs XLA a slow transposing dot on CPU).
    """
    batch, windows, width = cols.shape
    return cols.reshape(batch * windows, groups, width // groups).transpose(1, 0, 2)


def forward_gemm(cols: jax.Array, w_flat: jax.Array, *, precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """O_f = phi(I) F_f: ``(N, P, C*K) x (G, J, FN/G) -> (G, N*P, FN/G)``."""
    return jnp.einsum(
        "gmj,gjo->gmo", _grouped(cols, w_flat.shape[0]), w_flat,
        precision=precision, preferred_element_type=preferred_element_type,
    )


def filter_grad(cols: jax.Array, dout_flat: jax.Array, *, precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """dL/dF_f = phi(I)^T dL/dO_f, summed over the N images by the row contraction: ``-> (G, J, FN/G)``."""
    return jnp.einsum(
        "gmj,gmo->gjo", _grouped(cols, dout_flat.shape[0]), dout_flat,
        precision=precision, preferred_element_type=preferred_element_type,
    )


def cols_grad(dout_flat: jax.Array, w_flat: jax.Array, *, batch: int, precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """dL/dphi(I) = dL/dO_f F_f^T: ``(G, N*P, FN/G) x (G, J, FN/G) -> (N, P, C*K)``, phi's layout."""
    groups, rows, per_group = w_flat.shape[0], dout_flat.shape[1], w_flat.shape[1]
    dcols = jnp.einsum(
        "gmo,gjo->gmj", dout_flat, w_flat,
        precision=precision, preferred_element_type=preferred_element_type,
    )
    return dcols.transpose(1, 0, 2).reshape(batch, rows // batch, groups * per_group)


def bias_grad(dout_flat: jax.Array) -> jax.Array:
    """dL/db: every row of O_f adds b, so its gradient sums dL/dO_f over the rows: ``-> (FN,)``."""
    return dout_flat.sum(axis=1).reshape(-1)


# --- layout between O_f and the (N, FN, *out) output ----------------------------


def _to_output(out_flat: jax.Array, geometry: ConvGeometry, batch: int) -> jax.Array:
    """O_f ``(G, N*P, FN/G)`` -> ``(N, FN, *out_spatial)``."""
    groups, _, per_group = out_flat.shape
    out = out_flat.reshape(groups, batch, geometry.num_windows, per_group).transpose(1, 0, 3, 2)
    return out.reshape((batch, groups * per_group) + geometry.out_spatial)


def _from_output(dout: jax.Array, spec: ConvSpec) -> jax.Array:
    """dL/dO ``(N, FN, *out_spatial)`` -> dL/dO_f ``(G, N*P, FN/G)``: the adjoint of :func:`_to_output`."""
    batch, fn = dout.shape[:2]
    windows = spec.geometry.num_windows
    rows = dout.reshape(batch, spec.groups, fn // spec.groups, windows).transpose(1, 0, 3, 2)
    return rows.reshape(spec.groups, batch * windows, fn // spec.groups)


def add_bias(out: jax.Array, b: jax.Array | None) -> jax.Array:
    """``out + b`` with ``b`` of shape (FN,) on the feature axis of ``(N, FN, *out)``."""
    if b is None:
        return out
    return out + b.astype(out.dtype).reshape((1, -1) + (1,) * (out.ndim - 2))


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
    w_flat = flatten_filters(w, spec.groups)                           # F_f

    def chunk_forward(carry, x_chunk):
        cols = _im2col(x_chunk, spec.geometry)                         # phi(I)
        out_flat = forward_gemm(                                       # O_f = phi(I) F_f
            cols, w_flat, precision=spec.precision, preferred_element_type=spec.preferred_element_type
        )
        return carry, _to_output(out_flat, spec.geometry, x_chunk.shape[0])

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
    w_flat = flatten_filters(w, spec.groups).astype(dout.dtype)        # F_f

    def chunk_backward(dw_flat, x_chunk, dout_chunk):
        cols = _im2col(x_chunk, spec.geometry).astype(dout.dtype)      # phi(I)
        dout_flat = _from_output(dout_chunk, spec)                     # dL/dO_f
        dw_flat = dw_flat + filter_grad(cols, dout_flat, **options)    # phi(I)^T dL/dO_f
        dcols = cols_grad(dout_flat, w_flat, batch=x_chunk.shape[0], **options)                # dL/dO_f F_f^T
        return dw_flat, _col2im(dcols, spec.geometry, spec.col2im_method)  # col2im(dL/dphi)

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
