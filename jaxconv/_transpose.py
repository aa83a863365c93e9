"""The transposed convolution: the note read backwards.

A transposed convolution is the input-gradient map of a convolution. For the
conv ``O = conv(I, W)`` of a geometry ``g`` (input size ``S``, stride ``s``,
padding, dilation), the note's backward sends a tensor ``X`` shaped like O to

    Y = col2im(X_f F_f^T)                      (Eq. 2, then col2im)

shaped like I. That is the transposed conv of X: no product with an inserted
zero is computed, where ``lax.conv_general_dilated(X, ..., lhs_dilation=s)``
multiplies ``s**d - 1`` zeros for every product that counts. Its VJP is the
note again, roles swapped:

* dL/dX = phi(dL/dY) F_f, the conv's forward on dL/dY;
* dL/dF_f = phi(dL/dY)^T X_f, Eq. 1 with dL/dY as the input and X as dL/dO.

lax writes a transposed conv as a conv of the input-dilated X, with window
strides 1, padding ``(lo, hi)``, rhs dilation ``d`` and filters ``W'`` of shape
``(O', I', *k)``. Per dimension, with ``K_d = (k - 1) d + 1``, it is the input
gradient of the conv :func:`transposed_geometry` gives: input size ``Y``,
stride ``s``, padding ``(K_d - 1 - lo, K_d - 1 - hi)``, dilation ``d``, and
filters :func:`primal_filters` (W' flipped, its two feature axes swapped per group).

The transposed conv is the primitive ``col2im_p`` (:mod:`jaxconv._primitives`), whose transposes are the
conv's forward and Eq. 1: the registration that differentiates the conv differentiates it too.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxconv._geometry import ConvGeometry, conv_geometry, dilate_dim


def transposed_geometry(
    in_spatial: tuple[int, ...],
    kernel_size: tuple[int, ...],
    lhs_dilation: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    rhs_dilation: tuple[int, ...],
) -> ConvGeometry | None:
    """The conv whose input gradient is lax's input-dilated conv (window strides 1), or None if it has none.

    ``in_spatial`` is the input-dilated conv's undilated input, which is the
    conv's output; the conv's input is the lax conv's output. None when either
    is empty, where lax's own path is kept.

    >>> g = transposed_geometry((4,), (3,), (2,), ((2, 3),), (1,))
    >>> g.in_spatial, g.stride, g.padding, g.out_spatial
    ((10,), (2,), ((0, -1),), (4,))
    """
    pads, out = [], []
    for size, k, s, (lo, hi), d in zip(in_spatial, kernel_size, lhs_dilation, padding, rhs_dilation):
        k_d = dilate_dim(k, d)
        out.append(dilate_dim(size, s) + lo + hi - k_d + 1)
        pads.append((k_d - 1 - lo, k_d - 1 - hi))
    if min(in_spatial, default=1) < 1 or min(out, default=1) < 1:
        return None
    geometry = conv_geometry(tuple(out), kernel_size, stride=lhs_dilation, padding=tuple(pads), dilation=rhs_dilation)
    assert geometry.out_spatial == tuple(in_spatial), (geometry, in_spatial)
    return geometry


def primal_filters(w: jax.Array, groups: int) -> jax.Array:
    """lax's filters ``(O', I', *k)`` of a transposed conv as the conv's ``(G*I', O'/G, *k)``: flipped, swapped.

    Filter ``g*I' + i`` of the conv, channel ``o``, offset ``k`` is ``W'[g*O'/G + o, i, K - 1 - k]``.
    Its own inverse, given the conv's groups.
    """
    out_features, in_features = w.shape[:2]
    per_group = w.reshape((groups, out_features // groups, in_features) + w.shape[2:]).swapaxes(1, 2)
    swapped = per_group.reshape((groups * in_features, out_features // groups) + w.shape[2:])
    return jnp.flip(swapped, axis=tuple(range(2, w.ndim)))


def transposed_route(geometry: ConvGeometry, batch_groups: int, dtype: Any) -> ConvGeometry | None:
    """The conv whose input gradient lax's conv of ``geometry`` is, where computing it so is equivalent.

    That is an input-dilated conv (``lhs_dilation > 1``) with window strides 1,
    no batch groups, of a floating or complex dtype, with a non-empty input and
    output. Elsewhere (None) the conv runs as im2col + GEMM of the dilated input.
    """
    if max(geometry.lhs_dilation, default=1) == 1 or max(geometry.stride, default=1) > 1 or batch_groups > 1:
        return None
    if not jnp.issubdtype(dtype, jnp.inexact):
        return None
    return transposed_geometry(
        geometry.in_spatial, geometry.kernel_size, geometry.lhs_dilation, geometry.padding, geometry.dilation
    )
