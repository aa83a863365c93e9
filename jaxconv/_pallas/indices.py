"""Where each fused GEMM reads its gathered operand: NumPy index vectors built at trace time.

Every index here is a flat element address into an array the kernels see as
one flat vector per group, in channels-last (NHWC-like) order so that the
channels of one pixel are contiguous:

* phi(I), the forward's and the filter gradient's operand, reads the padded
  input ``(N, *padded_spatial, C)``. Its columns are ordered ``(*kernel, c)``
  (channels fastest, unlike :func:`jaxconv.im2col`'s ``(c, *kernel)``), so the
  address of ``phi[m, k]`` is ``row_base[m] + col_off[k]``
  (:func:`phi_offsets`): ``window_indices`` factorised into where a window
  starts and where a kernel offset lands inside it.
* the input gradient gathers rows of dL/dO ``(N, OH*OW + 1, FN)``, the extra
  row of each image being zeros: input pixel ``q`` reads, through kernel
  offset ``t``, the output position :func:`window_taps` names, or the zero row
  when no window reads ``q`` through ``t`` (stride holes, cropped pixels).

Everything runs on static Python ints and NumPy; the arrays these index are
built in :mod:`jaxconv._pallas.fused` and read in :mod:`jaxconv._pallas.kernels`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxconv._geometry import ConvGeometry

# Addresses are int32 on both backends (interpret mode runs without x64).
MAX_ADDRESS = 2**31 - 1


def _row_major_places(shape: tuple[int, ...]) -> np.ndarray:
    """Elements between consecutive entries of each dim of a row-major array of ``shape``."""
    return np.cumprod((1,) + tuple(shape[::-1]), dtype=np.int64)[:-1][::-1]


def _grid_sum(vectors: list[np.ndarray]) -> np.ndarray:
    """``out[i0, i1, ...] = vectors[0][i0] + vectors[1][i1] + ...``, flattened row-major."""
    total = np.zeros((), np.int64)
    for v in vectors:
        total = total[..., None] + np.asarray(v, np.int64)
    return total.reshape(-1)


def _checked(address: np.ndarray, what: str) -> np.ndarray:
    if address.size and int(address.max()) > MAX_ADDRESS:
        raise ValueError(f"{what} reaches address {int(address.max())}, beyond int32 indexing ({MAX_ADDRESS})")
    return address.astype(np.int32)


def phi_offsets(geometry: ConvGeometry, batch: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Factorises phi(I)'s gather: ``phi[m, k]`` is element ``row_base[m] + col_off[k]`` of the padded input.

    The padded input is flattened channels-last, ``(N, *padded_spatial, C)``.
    Rows ``m`` run over ``(n, *out)``, columns ``k`` over ``(*kernel, c)``, both
    row-major. In 2-D, with padded size ``(Hp, Wp)``:
    ``row_base = ((n*Hp + oh*s_h)*Wp + ow*s_w)*C`` and
    ``col_off = (kh*d_h*Wp + kw*d_w)*C + c``; the same sum runs over any
    number of spatial dims.

    Args:
      geometry: the convolution (padding, strides and dilations already resolved).
      batch: N, the images.
      channels: C, the channels of the gathered array (per group).

    Returns:
      ``row_base`` of shape ``(N*prod(out_spatial),)`` and ``col_off`` of shape
      ``(prod(kernel_size)*C,)``, int32.

    >>> from jaxconv._geometry import conv_geometry
    >>> row_base, col_off = phi_offsets(conv_geometry((3, 3), (2, 2)), batch=1, channels=2)
    >>> row_base.tolist()  # windows start at pixels 0, 1, 3, 4 of the 3x3 image
    [0, 2, 6, 8]
    >>> col_off.tolist()  # kernel offsets land 0, 1, 3, 4 pixels further; 2 channels each
    [0, 1, 2, 3, 6, 7, 8, 9]
    """
    places = _row_major_places(geometry.padded_spatial) * channels
    image = math.prod(geometry.padded_spatial) * channels
    starts = [np.arange(o) * s * p for o, s, p in zip(geometry.out_spatial, geometry.stride, places)]
    offsets = [np.arange(k) * d * p for k, d, p in zip(geometry.kernel_size, geometry.dilation, places)]
    row_base = _grid_sum([np.arange(batch) * image] + starts)
    col_off = _grid_sum(offsets + [np.arange(channels)])
    _checked(np.array([batch * image - 1]), f"the padded input of {batch} images x {channels} channels")
    return _checked(row_base, "phi's rows"), _checked(col_off, "phi's columns")


def window_taps(geometry: ConvGeometry) -> np.ndarray:
    """Which output position reads each input pixel through each kernel offset: the inverse of ``window_indices``.

    Input pixel ``i`` sits at padded position ``q = i * lhs_dilation + lo``;
    kernel offset ``k`` of output position ``o`` reads ``o * stride + k *
    dilation``. So ``o = (q - k * dilation) / stride`` when that is an integer
    in ``[0, out)`` in every dim; otherwise no window reads pixel ``i`` through
    ``k`` (a stride hole, a cropped pixel, a window off the edge) and the entry
    is ``num_windows``, the index of a zero row.

    Returns:
      An int32 array of shape ``(prod(in_spatial), prod(kernel_size))``, rows
      and columns row-major, entries flat row-major output positions or
      ``num_windows``.

    >>> from jaxconv._geometry import conv_geometry
    >>> window_taps(conv_geometry((4,), (2,), stride=2)).tolist()  # outputs 0, 1 read pixels (0, 1), (2, 3)
    [[0, 2], [2, 0], [1, 2], [2, 1]]
    """
    n = geometry.ndim
    flat = np.zeros(geometry.in_spatial + geometry.kernel_size, np.int64)
    valid = np.ones(geometry.in_spatial + geometry.kernel_size, bool)
    out_places = _row_major_places(geometry.out_spatial)
    for d in range(n):
        q = np.arange(geometry.in_spatial[d]) * geometry.lhs_dilation[d] + geometry.padding[d][0]
        reach = q[:, None] - np.arange(geometry.kernel_size[d])[None, :] * geometry.dilation[d]
        o, hole = np.divmod(reach, geometry.stride[d])
        shape = [1] * (2 * n)
        shape[d], shape[n + d] = reach.shape
        valid = valid & ((reach >= 0) & (hole == 0) & (o < geometry.out_spatial[d])).reshape(shape)
        flat = flat + (o * out_places[d]).reshape(shape)
    taps = np.where(valid, flat, geometry.num_windows)
    return taps.reshape(math.prod(geometry.in_spatial), geometry.window_size).astype(np.int32)


class TapGather(NamedTuple):
    """The input gradient's gather: element ``row_base[m] + table[row_tap[m] + col_tap[k]] + col_off[k]``.

    Rows ``m`` run over ``(n, *in_spatial)``, columns ``k`` over ``(*kernel, f)``.
    """

    row_base: np.ndarray  # n * (OH*OW + 1) * FN: where image n's rows of dL/dO begin
    col_off: np.ndarray  # f: the feature within a row
    table: np.ndarray  # window_taps * FN, flattened: where the row read through a kernel offset begins
    row_tap: np.ndarray  # q * prod(kernel): the table row of input pixel q
    col_tap: np.ndarray  # t: the kernel offset


def tap_offsets(geometry: ConvGeometry, batch: int, features: int) -> TapGather:
    """Index vectors gathering dL/dO_f's rows for dL/dI, the transposed convolution as an implicit GEMM.

    The gathered array is dL/dO channels-last with one zero row appended per
    image, ``(N, OH*OW + 1, FN)``, flattened (``FN`` features per group).
    Column ``(t, f)`` of row ``(n, q)`` is dL/dO_f at the output position that
    reads pixel ``q`` through kernel offset ``t`` (:func:`window_taps`), feature
    ``f``: so ``gathered @ F_f^T`` (rows of ``F_f^T`` ordered ``(t, f)``) sums
    every window's contribution to pixel ``q``, which is col2im of
    ``dL/dO_f F_f^T``.

    >>> from jaxconv._geometry import conv_geometry
    >>> g = tap_offsets(conv_geometry((4,), (2,), stride=2), batch=1, features=1)
    >>> [int(g.row_base[m] + g.table[g.row_tap[m] + g.col_tap[k]] + g.col_off[k])
    ...  for m in range(4) for k in range(2)]  # row 2 of the image is the zero row
    [0, 2, 2, 0, 1, 2, 2, 1]
    """
    image = (geometry.num_windows + 1) * features
    pixels, window = math.prod(geometry.in_spatial), geometry.window_size
    _checked(np.array([batch * image - 1]), f"dL/dO of {batch} images x {features} features")
    return TapGather(
        row_base=_checked(_grid_sum([np.arange(batch) * image, np.zeros(pixels, np.int64)]), "dL/dO's images"),
        col_off=_checked(_grid_sum([np.zeros(window, np.int64), np.arange(features)]), "dL/dO's features"),
        table=_checked(window_taps(geometry).astype(np.int64).reshape(-1) * features, "dL/dO's rows"),
        row_tap=_checked(_grid_sum([np.zeros(batch, np.int64), np.arange(pixels) * window]), "the tap table"),
        col_tap=_checked(_grid_sum([np.arange(window), np.zeros(features, np.int64)]), "the tap table"),
    )
